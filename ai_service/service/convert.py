"""The one convert pipeline (no model): validate the fields (pydantic), decode with hints, apply them, encode.

POST /api/v1/convert and the Tools page both call `convert`, so the same inputs give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ai_service.errors import ServiceError
from ai_service.imaging.encode import data_url
from ai_service.imaging.io import decode_image, encode_image, mime_type, sniff_format
from ai_service.imaging.ops import OperationError, apply_operations
from ai_service.schemas.convert import ConvertOptions, convert_issues, parameter_loc
from ai_service.service.outputs import output_name


@dataclass(frozen=True)
class ConvertOutcome:
    """The converted image as file bytes, with the facts a caller shows or sends back."""

    #: The encoded output image.
    data: bytes
    #: Its format (png, jpeg, webp), size and PIL mode.
    format: str
    width: int
    height: int
    mode: str
    #: The operations as applied, with defaults filled in.
    operations: list[dict[str, Any]]
    #: How the last resize fitted the image, in the uploaded image's pixels; None without a resize.
    geometry: dict[str, Any] | None
    #: The uploaded image's format (sniffed from its bytes) and size (before any reduced decoding).
    source_format: str
    source_size: tuple[int, int]
    #: A safe download name: the upload's stem + "-converted" + the output extension.
    filename: str

    @property
    def content_type(self) -> str:
        return mime_type(self.format)

    @property
    def data_url(self) -> str:
        """The image as a `data:` URL, for JSON and <img src>."""
        return data_url(self.data, self.format)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer (ConvertResponse): output facts, the data URL, the operations, any resize geometry."""
        body: dict[str, Any] = {
            "format": self.format,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "bytes": len(self.data),
            "filename": self.filename,
            "source": {"format": self.source_format, "width": self.source_size[0], "height": self.source_size[1]},
            "operations": self.operations,
            "data_url": self.data_url,
        }
        if self.geometry is not None:
            body["geometry"] = self.geometry
        return body


def convert_options(fields: Mapping[str, Any], max_pixels: int) -> ConvertOptions:
    """Validate the form's fields (all but the file); any problem is a 422 `validation_error` listing each field."""
    try:
        return ConvertOptions.model_validate(dict(fields), context={"max_pixels": max_pixels})
    except ValidationError as error:
        raise invalid(convert_issues(error)) from None


def invalid(issues: list[dict[str, Any]]) -> ServiceError:
    """The `validation_error` for these issues; the message names the first as a path, e.g. operations[0].width."""
    first = issues[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    more = f" (and {len(issues) - 1} more problem(s))" if len(issues) > 1 else ""
    return ServiceError("validation_error", f"Invalid request: {where}: {first['msg']}{more}.", issues)


def convert(data: bytes, filename: str, options: ConvertOptions, max_pixels: int) -> ConvertOutcome:
    """Decode with hints from the validated operations, apply them and encode.

    Raises ServiceError: the decoder's error for a bad image, or `validation_error` when a resize would exceed
    the pixel budget once the image's aspect ratio is known.
    """
    ops = [operation.model_dump() for operation in options.operations]
    image = decode_image(data, max_pixels=max_pixels, layer=options.layer, layers=options.layers, **decode_hints(ops))
    try:
        result = apply_operations(image, ops, max_pixels=max_pixels)
    except OperationError as error:
        text = error.message.removeprefix(f"{error.parameter}: ")
        raise invalid([{"loc": parameter_loc(error.parameter), "msg": text, "type": "too_many_pixels"}]) from None
    body = encode_image(result.image, options.format, quality=options.quality)
    return ConvertOutcome(
        body,
        options.format,
        result.image.width,
        result.image.height,
        result.image.mode,
        result.applied,
        result.geometry,
        sniff_format(data),
        image.info.get("source_size", image.size),
        output_name(filename, "converted", options.format),
    )


def decode_hints(ops: list[dict[str, Any]]) -> dict[str, tuple[int, int] | None]:
    """When the first operation is a two-sided resize, decode no larger than needed.

    JPEGs then use reduced (DCT-domain) decoding and SVGs are rasterized at the target (exactly, for stretch;
    covering it with the aspect kept, otherwise), which is sharper and cheaper than rendering big and shrinking.
    """
    if not ops or ops[0]["op"] != "resize" or not (ops[0]["width"] and ops[0]["height"]):
        return {"target_size": None, "svg_size": None}
    size = (ops[0]["width"], ops[0]["height"])
    return {"target_size": size, "svg_size": size if ops[0]["fit"] == "stretch" else None}
