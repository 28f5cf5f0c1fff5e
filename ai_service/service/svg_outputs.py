"""`output_format=svg`: detections, segmentation masks and image outputs (edge maps) as SVG drawings sized like the
input, for the JSON API (`svg` in each result) and `return=image` (the drawing is the body)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from PIL import Image

from ai_service.errors import ServiceError
from ai_service.imaging.io import decode_image
from ai_service.imaging.vector import Region, detections_svg, regions_svg
from ai_service.service.upload import Upload

#: Tasks whose results have something to draw: boxes, masks, an output image traced as line art.
SVG_TASKS: Final = ("detection", "segmentation", "image-to-image")
#: Region fill opacity over an embedded input image (opaque without one).
OVER_IMAGE: Final = 0.6
#: Colors of a mask without a legend: more distinct colors than this is not a class mask.
MAX_MASK_COLORS: Final = 256


def check_svg_output(name: str, task: str) -> None:
    """`output_format=svg` needs a model whose result can be drawn."""
    if task not in SVG_TASKS:
        problem = f"model {name} is a {task} model; SVG draws detections, segmentation masks and output images"
        raise ServiceError(
            "validation_error",
            f"Invalid request: output_format: {problem}.",
            [{"loc": ["output_format"], "msg": problem, "type": "value_error"}],
        )


def add_svg(
    results: list[dict[str, Any]], uploads: Sequence[Upload | ServiceError], background: str, max_pixels: int
) -> None:
    """Give each successful result its drawing (`svg`, the document's text); `background="image"` embeds the input
    (decoded again at full size, the same layer of a PSD) as the drawing's base layer."""
    for result, upload in zip(results, uploads):
        if "error" in result or not isinstance(upload, Upload) or "width" not in result:
            continue  # a failed input, or a 3D model's views (their results are per view)
        base = None
        if background == "image":
            base = decode_image(upload.data, max_pixels=max_pixels, layer=upload.layer, layers=upload.layers)
            if base.size != (result["width"], result["height"]):
                base = base.resize((result["width"], result["height"]), Image.Resampling.LANCZOS)
        result["svg"] = drawing(result, base)


def drawing(result: dict[str, Any], background: Image.Image | None = None) -> str:
    """The SVG of one located result (boxes, masks and images in the source image's pixels)."""
    width, height = result["width"], result["height"]
    if isinstance(result.get("detections"), list):
        return detections_svg(width, height, result["detections"], background)
    opacity = OVER_IMAGE if background is not None else 1.0
    if isinstance(result.get("mask"), Image.Image):
        return regions_svg(width, height, mask_regions(result["mask"], result.get("classes"), opacity), background)
    if isinstance(result.get("image"), Image.Image):
        return regions_svg(width, height, [line_art(result["image"])], background)
    return regions_svg(width, height, [], background)


def mask_regions(mask: Image.Image, classes: Any, opacity: float = 1.0) -> list[Region]:
    """One region per class of a segmentation mask, colored by its legend (`classes`); a binary (L) mask is one
    region; a colored mask without a legend, one region per color. Transparent or black-on-L pixels are no class."""
    if mask.mode in ("1", "L", "I", "I;16", "F"):
        label = classes[0]["label"] if isinstance(classes, list) and classes else "foreground"
        return [Region(str(label), "#ff0000", np.asarray(mask.convert("L")) > 127, opacity)]
    rgba = np.asarray(mask.convert("RGBA"))
    covered = rgba[..., 3] > 0
    rgb = rgba[..., :3]
    legend = [c for c in classes if isinstance(c, dict) and "color" in c] if isinstance(classes, list) else []
    if not legend:
        colors = np.unique(rgb[covered].reshape(-1, 3), axis=0)[:MAX_MASK_COLORS]
        names = ["#" + bytes(int(v) for v in color).hex() for color in colors]
        legend = [{"label": name, "color": name} for name in names]
    regions = []
    for entry in legend:
        value = np.array([int(entry["color"][i : i + 2], 16) for i in (1, 3, 5)], np.uint8)
        where = covered & np.all(rgb == value, axis=-1)
        if where.any():
            regions.append(Region(str(entry["label"]), entry["color"], where, opacity))
    return regions


def line_art(image: Image.Image) -> Region:
    """An output image traced as lines: its pixels brighter than half (and not transparent), drawn in black."""
    gray = np.asarray(image.convert("L")) > 127
    if image.mode in ("LA", "RGBA"):
        gray &= np.asarray(image.getchannel("A")) > 127
    return Region("lines", "#000000", gray)
