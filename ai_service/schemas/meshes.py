"""The 3D model endpoints' requests and answers as pydantic models (POST /api/v1/meshes/inspect, render, convert),
and the `views` / `size` options /predict shares with them.

Torch-, trimesh- and Flask-free to import, like ai_service.schemas and ai_service.schemas.convert; the view names
are spelled out here and tests/test_meshes.py keeps them equal to ai_service.meshes.render.NAMED_VIEWS.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ai_service.schemas.multipart import multipart_fields

VIEW_NAMES: Final = ("front", "back", "left", "right", "side", "top", "bottom", "iso")
MAX_VIEWS: Final = 360
MeshFormat = Literal["glb", "obj", "stl", "ply"]
VIEWS_HELP: Final = (
    "A number of views evenly around the model (a turntable, the first from the front), or view names separated "
    f"by commas: {', '.join(VIEW_NAMES)} (`side` is `right`)."
)


def check_views(value: Any) -> Any:
    """`8` or "8" (a turntable) or "front,iso": normalized to an int or a comma-joined list of known names."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_VIEWS:
            raise ValueError(f"a turntable has 1 to {MAX_VIEWS} views")
        return value
    text = str(value).strip().lower()
    if text.isdigit():
        return check_views(int(text))
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VIEW_NAMES]
    if not names or unknown:
        raise ValueError(f"must be a number of views or names from {', '.join(VIEW_NAMES)}")
    return ",".join(names)


def view_list(value: int | str) -> int | list[str]:
    """A validated `views` value as a turntable count or a list of names."""
    return value if isinstance(value, int) else value.split(",")


class Strict(BaseModel):
    """Unknown members are errors: a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class MeshRenderOptions(Strict):
    """The fields of POST /api/v1/meshes/render besides the file."""

    views: int | str = Field(8, examples=[8, "front,side,top,iso"], description=VIEWS_HELP)
    size: int = Field(
        512,
        ge=16,
        le=4096,
        description="Side of each square view in pixels (up to the server's AI_SERVICE_MESH_MAX_RENDER_SIZE).",
    )
    background: str | None = Field(
        None,
        max_length=64,
        examples=["transparent", "#ffffff"],
        description="`transparent` (the default: PNGs with alpha) or a color (CSS name or #rrggbb).",
    )
    up: Literal["y", "z"] = Field("y", description="The model's up axis: `y` (glTF, OBJ) or `z` (most CAD STL/PLY).")
    elevation: float = Field(20.0, ge=-90, le=90, description="Turntable views: degrees above the horizon.")
    antialias: bool = Field(True, description="Render at twice the size and filter down (smoother edges).")
    response: Literal["json", "image"] = Field(
        "json", description="`json`: every view as a PNG data URL with its facts; `image`: the PNG itself (one view)."
    )

    @field_validator("views", mode="before")
    @classmethod
    def _views(cls, value: Any) -> Any:
        return check_views(value)

    @field_validator("background")
    @classmethod
    def _color(cls, value: str | None) -> str | None:
        """Transparent spelled any documented way is None; other colors must parse."""
        if value is None or value.strip().lower() in ("", "transparent", "none"):
            return None
        from ai_service.imaging.alpha import parse_color

        try:
            parse_color(value)
        except ValueError:
            raise ValueError("must be `transparent` or a color like white or #ffffff") from None
        return value

    @field_validator("antialias", mode="before")
    @classmethod
    def _boolean_word(cls, value: Any) -> Any:
        """A multipart boolean is `true` or `false`."""
        if isinstance(value, str):
            if value.strip().lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return value.strip().lower() == "true"
        return value


class MeshRenderForm(MeshRenderOptions):
    """multipart/form-data body of POST /api/v1/meshes/render (documentation only: the file arrives separately)."""

    model_config = ConfigDict(json_schema_extra=multipart_fields)

    file: bytes = Field(description="The model: GLB, glTF, OBJ, STL, PLY, or a zip of one with its files.")


class MeshFileForm(Strict):
    """multipart/form-data body of POST /api/v1/meshes/inspect and /convert: the model alone."""

    model_config = ConfigDict(json_schema_extra=multipart_fields)

    file: bytes = Field(description="The model: GLB, glTF, OBJ, STL, PLY, or a zip of one with its files.")


class MeshConvertQuery(Strict):
    """The query of POST /api/v1/meshes/convert."""

    format: MeshFormat = Field(description="`glb`, `obj` (a zip with its MTL and textures), `stl` or `ply`.")


class ResponseSchema(BaseModel):
    """Response bodies: members a newer server adds never break a client that validates with these."""

    model_config = ConfigDict(extra="allow")


class MeshMaterial(ResponseSchema):
    name: str
    color: str = Field(description="Base color as #rrggbbaa.")
    textured: bool


class MeshTexture(ResponseSchema):
    material: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    file: str | None = Field(None, description="The texture's file name, when the model named one.")


class IgnoredReference(ResponseSchema):
    name: str = Field(description="A file or URL the model named (an OBJ's mtllib or map_Kd), never opened.")
    reason: str


class MeshFacts(ResponseSchema):
    """POST /api/v1/meshes/inspect: the model's facts, in its own units, its scene flattened with its transforms."""

    format: str = Field(description="glb, gltf, obj, stl or ply (a zip's model file's format).")
    name: str = Field(description="The model file's name (a zip member's, when zipped).")
    zipped: bool
    vertices: int = Field(ge=0)
    faces: int = Field(ge=0, description="Triangles (polygons are triangulated).")
    parts: int = Field(ge=0, description="Placed meshes (scene instances and material groups).")
    bounds: list[list[float]] = Field(description="[[xmin, ymin, zmin], [xmax, ymax, zmax]].")
    extents: list[float] = Field(description="[x, y, z] size of the bounds.")
    centroid: list[float] = Field(description="The surface's area-weighted centre.")
    surface_area: float = Field(ge=0)
    volume: float | None = Field(None, description="Enclosed volume; null unless the surface is watertight.")
    watertight: bool
    units: str | None = Field(None, description="Declared units (glTF: m by specification), else null.")
    materials: list[MeshMaterial]
    textures: list[MeshTexture]
    ignored_references: list[IgnoredReference] = Field(
        description="Files or URLs the model named outside the upload: ignored, never read."
    )


class MeshView(ResponseSchema):
    """One rendered view."""

    name: str = Field(description="`turntable-N` or the view's name.")
    azimuth: float = Field(description="Degrees around the up axis; 0 looks at the front (+Z).")
    elevation: float = Field(description="Degrees above the horizon.")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    coverage: float = Field(ge=0, le=1, description="Fraction of the image the model covers.")
    image: str = Field(description="The view as a PNG data URL.")


class MeshRenderResponse(ResponseSchema):
    """POST /api/v1/meshes/render (`response=json`)."""

    scale: float = Field(description="Pixels per model unit, the same in every view (orthographic).")
    views: list[MeshView]
    mesh: MeshFacts
    timing_ms: dict[str, float] = Field(description="Milliseconds to load and to render.")


class MeshViewOptions(BaseModel):
    """How /predict turns a 3D model input into images: views rendered and each run through the model."""

    views: int | str = Field(
        8, examples=[8, "front,iso"], description=f"3D model inputs: {VIEWS_HELP} Other inputs ignore it."
    )
    size: int = Field(256, ge=16, le=4096, description="3D model inputs: side of each rendered view in pixels.")

    @field_validator("views", mode="before")
    @classmethod
    def _views(cls, value: Any) -> Any:
        return check_views(value)
