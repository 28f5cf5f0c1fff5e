"""The POST /api/v1/convert request as pydantic models: the operations are a union discriminated by `op`.

Torch-, PIL- and Flask-free to import, like ai_service.schemas (whose ConvertForm adds the file to ConvertOptions and
which re-exports the operations for the OpenAPI document); the choices are spelled out, and
tests/test_convert_contract.py keeps them equal to the imaging constants.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Json,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ai_service.schemas.psd import LayerChoice

MAX_OPERATIONS: Final = 20
MAX_SIDE: Final = 8192
Weights = Literal["bt601", "bt709"]
ColorSpace = Literal["hsv", "hls", "lab", "ycrcb", "yuv", "gray"]
Metric = Literal["max", "euclidean"]
FitMode = Literal["stretch", "letterbox", "crop"]
Filter = Literal["nearest", "bilinear", "bicubic", "lanczos", "area"]
ColorInput = Annotated[
    str | Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=3, max_length=4)],
    Field(examples=["#ff8800", "white", [255, 136, 0]], description="A CSS color name, #rgb / #rrggbb, or [r, g, b]."),
]
Tolerance = Annotated[int, Field(ge=0, le=441, description="Distance in RGB units (441 = black to white).")]
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
TRANSPARENT: Final = ("transparent", "none", "")
PARAMETER: Final = re.compile(r"\[(\d+)\]|\.?([A-Za-z_]\w*)")


class Strict(BaseModel):
    """Unknown members are errors: a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


def normalize_color(value: Any) -> str:
    """Any color the imaging library reads -> "#rrggbb" (imported lazily: this module stays PIL-free)."""
    from ai_service.imaging.alpha import parse_color

    try:
        r, g, b = parse_color(value)
    except (ValueError, TypeError):
        raise ValueError("must be a color like '#ff8800', 'white' or [255, 136, 0]") from None
    return f"#{r:02x}{g:02x}{b:02x}"


#: A color parameter, normalized to "#rrggbb" once validated.
Color = Annotated[ColorInput, AfterValidator(normalize_color)]


class ToGrayOperation(Strict):
    """Gray from luma weights; the alpha channel is kept unless keep_alpha is false."""

    op: Literal["to_gray"]
    weights: Weights = "bt601"
    keep_alpha: bool = True


class ColorspaceOperation(Strict):
    """RGB to another color space, its channels stored as the image's channels (OpenCV's conventions)."""

    op: Literal["colorspace"]
    space: ColorSpace = "hsv"


class FlattenAlphaOperation(Strict):
    """Transparent areas composited onto a solid color."""

    op: Literal["flatten_alpha"]
    background: Color = "#ffffff"


class ColorKeyOperation(Strict):
    """Pixels near `color` become transparent; `softness` feathers the edge."""

    op: Literal["color_key"]
    color: Color = "#ffffff"
    tolerance: Tolerance = 0
    softness: Tolerance = 0
    metric: Metric = "max"


class ResizeOperation(Strict):
    """Width and/or height (a missing side keeps the aspect ratio), a fit mode and a filter."""

    op: Literal["resize"]
    width: Side | None = None
    height: Side | None = None
    fit: FitMode = "stretch"
    filter: Filter = "lanczos"
    pad_color: ColorInput | None = Field(
        "#000000", description="Letterbox padding; null, `transparent` or `none` for transparent padding."
    )

    @field_validator("pad_color")
    @classmethod
    def _pad(cls, value: Any) -> str | None:
        """Transparent spelled any documented way is None; other colors are normalized."""
        if value is None or (isinstance(value, str) and value.strip().lower() in TRANSPARENT):
            return None
        return normalize_color(value)

    @model_validator(mode="after")
    def _size(self, info: ValidationInfo) -> ResizeOperation:
        """At least one side, and both sides within the pixel budget (the server's max_pixels)."""
        if self.width is None and self.height is None:
            raise PydanticCustomError("missing_size", "give width, height or both")
        budget = (info.context or {}).get("max_pixels")
        if budget and self.width and self.height and self.width * self.height > budget:
            raise PydanticCustomError(
                "too_many_pixels", "width x height must be at most {limit} pixels", {"limit": budget}
            )
        return self


ConvertOperation = Annotated[
    ToGrayOperation | ColorspaceOperation | FlattenAlphaOperation | ColorKeyOperation | ResizeOperation,
    Field(discriminator="op"),
]
OP_NAMES: Final = ("to_gray", "colorspace", "flatten_alpha", "color_key", "resize")


def not_null(schema: dict[str, Any]) -> None:
    """Document an optional multipart field as its values alone: multipart cannot send null, it leaves the field out."""
    branches = [branch for branch in schema.pop("anyOf", []) if branch.get("type") != "null"]
    schema.update(branches[0] if len(branches) == 1 else {"anyOf": branches} if branches else {})
    schema.pop("default", None)


class ConvertOptions(LayerChoice, Strict):
    """The fields of POST /api/v1/convert besides the file (ai_service/schemas/multipart.py's rule: leave a field out
    for its default; an empty value is validated like any other)."""

    operations: Json[Annotated[list[ConvertOperation], Field(max_length=MAX_OPERATIONS)]] = Field(
        default_factory=list,
        examples=['[{"op": "resize", "width": 224, "height": 224, "fit": "letterbox"}, {"op": "to_gray"}]'],
        description=f"A JSON list of up to {MAX_OPERATIONS} operations, applied in order; each is an object "
        "whose `op` selects its parameters (unknown parameters are errors).",
    )
    format: Literal["png", "jpeg", "webp"] = Field(
        "png", description="Output format; `jpg` and any letter case are accepted for `jpeg`."
    )
    quality: int = Field(90, ge=1, le=100, description="JPEG/WebP quality (100 = lossless WebP).")
    response: Literal["image", "json"] | None = Field(
        None,
        json_schema_extra=not_null,
        description="`image`: the encoded image; `json`: facts plus a data URL; "
        "when not sent, the Accept header decides (image unless it prefers application/json).",
    )
    download: bool = Field(False, description="`true`: Content-Disposition attachment instead of inline.")

    @field_validator("download", mode="before")
    @classmethod
    def _boolean_word(cls, value: Any) -> Any:
        """A multipart boolean is the word the schema names, `true` or `false` (not 1/0/yes: lax parsing would let
        a value the document calls invalid through)."""
        if isinstance(value, str) and value.strip().lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return value.strip().lower() == "true" if isinstance(value, str) else value

    @field_validator("format", mode="before")
    @classmethod
    def _format_name(cls, value: Any) -> Any:
        """`JPG`, `Jpeg` and `jpg` all mean jpeg."""
        if isinstance(value, str):
            value = value.strip().lower()
            return "jpeg" if value == "jpg" else value
        return value


def convert_issues(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as {loc, msg, type}, with the union's tag taken out of the path and a bad tag at `op`."""
    from ai_service.schemas import validation_details

    issues = validation_details(error)
    for issue in issues:
        loc = issue["loc"]
        if len(loc) > 2 and loc[0] == "operations" and loc[2] in OP_NAMES:
            del loc[2]
        if issue["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("op")
            issue["msg"] = f"must be one of {', '.join(OP_NAMES)}"
    return issues


def parameter_loc(parameter: str) -> list[str | int]:
    """'operations[0].width' -> ["operations", 0, "width"], the form of a validation issue's `loc`."""
    return [int(index) if index else name for index, name in PARAMETER.findall(parameter)]
