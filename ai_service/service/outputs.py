"""Model outputs for the caller: images flattened and encoded in the requested format, data URLs, file names.

The JSON API, the HTML result page, the CLI and jobs encode outputs here, so they never disagree.
"""

from __future__ import annotations

import re
import time
from pathlib import PurePath
from typing import Any

from PIL import Image

from ai_service.errors import ServiceError
from ai_service.imaging.alpha import flatten_alpha
from ai_service.imaging.encode import data_url, to_data_url
from ai_service.imaging.io import encode_image
from ai_service.schemas import PredictOptions
from ai_service.service.svg_outputs import SVG_TASKS

#: Tasks whose result carries an image (`image` or `mask`), so `return=image` can answer with it.
IMAGE_TASKS = ("image-to-image", "segmentation")


def check_image_return(name: str, task: str, inputs: int, batch: bool, fmt: str = "png") -> None:
    """`return=image` needs exactly one input and a model whose result is an image (or, for SVG, a drawing)."""
    problem = None
    if batch or inputs != 1:
        problem = "return=image needs exactly one input image; use return=json for batches"
    elif task not in (SVG_TASKS if fmt == "svg" else IMAGE_TASKS):
        problem = f"model {name} is a {task} model and returns no image; use return=json"
    if problem:
        raise ServiceError(
            "validation_error",
            f"Invalid request: return: {problem}.",
            [{"loc": ["return"], "msg": problem, "type": "value_error"}],
        )


def prepare_output(image: Image.Image, options: PredictOptions) -> Image.Image:
    """Flatten transparency onto the requested background (JPEG has no alpha: white unless told otherwise)."""
    if options.background and image.mode in ("LA", "RGBA"):
        return flatten_alpha(image, options.background)
    return image


def image_output(result: dict[str, Any]) -> Image.Image:
    """The image a `return=image` request answers with: the output image, or the segmentation mask."""
    for key in ("image", "mask"):
        if isinstance(result.get(key), Image.Image):
            return result[key]
    if "views" in result:  # a 3D model: one result per rendered view, so no single image to answer with
        problem = "a 3D model gives one output per rendered view; use return=json"
        raise ServiceError(
            "validation_error",
            f"Invalid request: return: {problem}.",
            [{"loc": ["return"], "msg": problem, "type": "value_error"}],
        )
    raise ServiceError("internal_error", "The model produced no image output.")


def encode_output(image: Image.Image, options: PredictOptions) -> bytes:
    """The output image as file bytes in the requested format and quality."""
    return encode_image(prepare_output(image, options), options.output_format, quality=options.quality)


def serialize(result: dict[str, Any], options: PredictOptions) -> dict[str, Any]:
    """PIL images become data URLs: `image` in the requested format, masks always as lossless PNG."""
    out = {}
    for key, value in result.items():
        if key == "svg" and isinstance(value, str):
            value = data_url(value.encode("utf-8"), "svg")
        elif key == "image" and isinstance(value, Image.Image) and options.output_format == "svg":
            value = to_data_url(value, "png")  # the drawing is `svg`; the image itself stays lossless
        elif key == "image" and isinstance(value, Image.Image):
            value = to_data_url(prepare_output(value, options), options.output_format, options.quality)
        elif isinstance(value, Image.Image):
            value = to_data_url(value, "png")
        elif key == "detections" and isinstance(value, list):
            value = [
                {k: to_data_url(v, "png") if isinstance(v, Image.Image) else v for k, v in item.items()}
                for item in value
            ]
        elif key == "views" and isinstance(value, list):  # a 3D model input: each view's own result
            value = [serialize(item, options) if isinstance(item, dict) else item for item in value]
        out[key] = value
    return out


def finish_timing(timing: dict[str, float], encode_started: float) -> None:
    """Add the output-encoding stage to the stages and to the wall-clock `total`."""
    timing["encode"] = round((time.perf_counter() - encode_started) * 1000.0, 3)
    before = timing.get("total", sum(value for key, value in timing.items() if key != "encode"))
    timing["total"] = round(before + timing["encode"], 3)


def output_name(filename: str, label: str, fmt: str) -> str:
    """A safe download name: the upload's stem (letters of any script kept), what made it (a model, 'converted'),
    the extension; HTTP headers carry it with an ASCII fallback (ai_service/http/disposition.py)."""
    stem = re.sub(r"[^\w.-]+", "_", PurePath(filename or "image").stem)[:100] or "image"
    return f"{stem}-{label}.{'jpg' if fmt == 'jpeg' else fmt}"
