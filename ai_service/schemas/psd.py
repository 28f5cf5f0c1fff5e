"""PSD layers in the API as pydantic models: which layer /predict and /convert read, POST /api/v1/psd/layers.

Torch-, PIL- and Flask-free to import, like ai_service.schemas (which re-exports these for the OpenAPI document).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ai_service.schemas.multipart import multipart_fields

LayersChoice = Literal["merged", "visible"]


class LayerChoice(BaseModel):
    """Which pixels of a PSD upload are used: its stored flattened image, its visible layers, or one layer."""

    layer: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        examples=["Logo", "Artwork/Logo", "2/0"],
        description="PSD uploads: use this one layer alone (a group: its visible contents), on the full canvas, even "
        "when it is hidden. An index path like `2/0` (positions from the top level down, 0 = the bottom of each "
        "stack, as `POST /api/v1/psd/layers` lists them), a name path like `Artwork/Logo`, or a unique name. Any "
        "other format: 422 `layer_not_found`.",
    )
    layers: LayersChoice = Field(
        "merged",
        description="PSD uploads without `layer`: `merged` = the flattened image Photoshop stored (composited from "
        "the visible layers when there is none); `visible` = composited now from the layers whose eye is on. "
        "Other formats have one layer and ignore it.",
    )

    @model_validator(mode="after")
    def _one_choice(self) -> Any:
        """`layer` and `layers=visible` are alternatives."""
        if self.layer is not None and self.layers == "visible":
            raise ValueError("send `layer` (one layer) or `layers=visible` (the visible layers), not both")
        return self


class PsdLayersOptions(BaseModel):
    """The fields of POST /api/v1/psd/layers besides the file."""

    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        examples=["2/0"],
        description="List only this layer (and, for a group, its contents): an index path, a name path or a name.",
    )
    png: bool = Field(
        False,
        description="`true`: each listed layer also carries `png`, its pixels (effects, masks and opacity applied, "
        "hidden or not) as a PNG data URL covering `png_box`.",
    )

    @field_validator("png", mode="before")
    @classmethod
    def _boolean_word(cls, value: Any) -> Any:
        """A multipart boolean is `true` or `false`, as the schema names it."""
        if isinstance(value, str) and value.strip().lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return value.strip().lower() == "true" if isinstance(value, str) else value


class PsdLayersForm(PsdLayersOptions):
    """multipart/form-data body of POST /api/v1/psd/layers (documentation only: the file arrives separately)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=multipart_fields)

    file: bytes = Field(description="The PSD (or PSB) file.")


class PsdLayerInfo(BaseModel):
    """One layer or group of a PSD document."""

    model_config = ConfigDict(extra="allow")

    index: str = Field(description="Index path: positions from the top level down, 0 = the bottom of each stack.")
    name: str
    path: str = Field(description="Names from the top level down, `Group/Sub/Layer`.")
    group: list[str] = Field(description="The enclosing groups' names, outermost first (empty at the top level).")
    kind: str = Field(description="`pixel`, `group`, `type`, `shape`, `smartobject`, `adjustment`, ...")
    visible: bool = Field(description="The layer's own eye icon.")
    shown: bool = Field(description="Visible and inside visible groups: whether the document shows it.")
    opacity: float = Field(ge=0, le=1, description="0 transparent to 1 opaque (Photoshop's percentage / 100).")
    blend_mode: str = Field(description="e.g. `normal`, `multiply`, `pass_through` (groups).")
    box: list[int] = Field(
        min_length=4, max_length=4, description="[x0, y0, x1, y1] in canvas pixels; may reach past the canvas."
    )
    png: str | None = Field(None, description="With `png=true`: the layer's pixels as a PNG data URL.")
    png_box: list[int] | None = Field(
        None, min_length=4, max_length=4, description="The canvas region the PNG covers: `box` clipped to the canvas."
    )


class PsdLayersResponse(BaseModel):
    """POST /api/v1/psd/layers: the document's facts and its layers, each group followed by its contents."""

    model_config = ConfigDict(extra="allow")

    width: int = Field(ge=1)
    height: int = Field(ge=1)
    color_mode: str = Field(description="rgb, cmyk, grayscale, ...")
    depth: int = Field(description="Bits per channel.")
    layers: list[PsdLayerInfo]
