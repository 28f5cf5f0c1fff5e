"""POST /api/v1/predict: images in (multipart or JSON), one result per image out, as JSON or as the image itself."""
from __future__ import annotations

import re
import time
from pathlib import PurePath
from typing import Any

from flask import Response, jsonify
from PIL import Image

from ai_service.api import bp
from ai_service.api.common import PredictCall, model_name_from, parse_predict_request, registry, settings
from ai_service.schemas import PredictOptions, PredictResponse
from ai_service.errors import ServiceError
from ai_service.imaging.alpha import flatten_alpha
from ai_service.imaging.encode import to_data_url
from ai_service.imaging.geometry import result_to_original, to_source_size
from ai_service.imaging.io import encode_image, mime_type
from ai_service.service.predict import Upload, predict
from ai_service.observability.logging import annotate_request
from ai_service.models.base import ModelInfo
from ai_service.models.registry import ModelLoadError, UnknownModelError

IMAGE_TASKS = ("image-to-image", "segmentation")
STAGES = ("load", "decode", "preprocess", "queue", "forward", "postprocess", "encode")


@bp.post("/predict")
def predict_endpoint():
    call = parse_predict_request()
    name = model_name_from({"model": call.options.model})
    info = registry().resolve(name).info
    annotate_request(model=name, items=len(call.items))
    check_return_kind(call, name, info.task)
    outcome = run_model(call, name, info)
    annotate_request(timing_ms=outcome["timing_ms"])
    results = outcome["results"]
    if not call.batch and "error" in results[0]:
        failed = results[0]
        raise ServiceError(failed["error"]["code"], failed["error"]["message"], failed["error"].get("details"))
    started = time.perf_counter()
    if call.options.return_ == "image":
        data = encode_output(image_output(results[0]), call.options)
        finish_timing(outcome["timing_ms"], started)
        return image_response(data, results[0], outcome, call.options)
    outcome["results"] = [serialise(result, call.options) for result in results]
    finish_timing(outcome["timing_ms"], started)
    body = PredictResponse.model_validate(outcome).model_dump(mode="json", by_alias=True, exclude_none=True)
    return jsonify(body), 200, {"Server-Timing": server_timing(body["timing_ms"])}


def check_return_kind(call: PredictCall, name: str, task: str) -> None:
    """`return=image` needs exactly one input and a model whose result is an image."""
    if call.options.return_ != "image":
        return
    problem = None
    if call.batch or len(call.items) != 1:
        problem = "return=image needs exactly one input image; use return=json for batches"
    elif task not in IMAGE_TASKS:
        problem = f"model {name} is a {task} model and returns no image; use return=json"
    if problem:
        raise ServiceError("validation_error", f"Invalid request: return: {problem}.",
                       [{"loc": ["return"], "msg": problem, "type": "value_error"}])


def run_model(call: PredictCall, name: str, info: ModelInfo) -> dict[str, Any]:
    """Run the model over the usable inputs and put every result (or per-item error) back in request order."""
    uploads = [item for item in call.items if isinstance(item, Upload)]
    outcome: dict[str, Any] = {"model": info.name, "version": info.version, "task": info.task, "results": [],
                               "timing_ms": {}}
    if uploads:
        options = call.options.model_options(settings().default_top_k)
        try:
            outcome = predict(registry(), name, uploads, options, settings().max_pixels)
        except UnknownModelError:
            raise ServiceError("unknown_model", f"The model {name!r} was removed.", {"model": name}) from None
        except ModelLoadError as error:
            raise ServiceError("model_unavailable", str(error), {"model": name}) from None
    produced = iter(outcome["results"])
    outcome["results"] = [locate(next(produced), index) if isinstance(item, Upload) else item_error(item, index)
                          for index, item in enumerate(call.items)]
    return outcome


def item_error(error: ServiceError, index: int) -> dict[str, Any]:
    """An input rejected before decoding (bad base64, a URL) as its entry in `results`."""
    body = {"code": error.code, "message": error.message}
    if error.details is not None:
        body["details"] = error.details
    return {"index": index, "filename": "", "status": error.status, "error": body}


def locate(result: dict[str, Any], index: int) -> dict[str, Any]:
    """Number the result and express it in the source image's pixels: geometry (EXIF, size), boxes, masks."""
    if "error" in result:
        return {"index": index, **result}
    decoded = (result["width"], result["height"])
    result = dict(result)
    # Decoding recorded a raster's EXIF orientation and header size; SVG/PSD have neither.
    orientation, source_size = result.pop("source", (1, None))
    geometry = to_source_size({"original_size": list(decoded), **(result.get("geometry") or {})},
                              source_size or decoded)
    geometry.update(exif_orientation=orientation, exif_rotated=orientation != 1)
    mapped = result_to_original(result, geometry if "scale" in geometry else None)
    width, height = geometry["original_size"]
    return {**mapped, "index": index, "width": width, "height": height, "geometry": geometry}


def serialise(result: dict[str, Any], options: PredictOptions) -> dict[str, Any]:
    """PIL images become data URLs: `image` in the requested format, masks always as lossless PNG."""
    out = {}
    for key, value in result.items():
        if key == "image" and isinstance(value, Image.Image):
            value = to_data_url(prepare_output(value, options), options.output_format, options.quality)
        elif isinstance(value, Image.Image):
            value = to_data_url(value, "png")
        elif key == "detections" and isinstance(value, list):
            value = [{k: to_data_url(v, "png") if isinstance(v, Image.Image) else v for k, v in item.items()}
                     for item in value]
        out[key] = value
    return out


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
    raise ServiceError("internal_error", "The model produced no image output.")


def encode_output(image: Image.Image, options: PredictOptions) -> bytes:
    return encode_image(prepare_output(image, options), options.output_format, quality=options.quality)


def image_response(data: bytes, result: dict[str, Any], outcome: dict[str, Any], options: PredictOptions) -> Response:
    """The encoded image as the whole body; model, size and timings travel in headers."""
    extension = "jpg" if options.output_format == "jpeg" else options.output_format
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePath(result.get("filename") or "image").stem) or "image"
    response = Response(data, mimetype=mime_type(options.output_format))
    response.headers.update({
        "Content-Disposition": f'inline; filename="{stem}-{outcome["model"]}.{extension}"',
        "X-Model": f"{outcome['model']}@{outcome['version']}",
        "Server-Timing": server_timing(outcome["timing_ms"]),
    })
    return response


def finish_timing(timing: dict[str, float], encode_started: float) -> None:
    """Add the output-encoding stage to the stages and to the wall-clock `total`."""
    timing["encode"] = round((time.perf_counter() - encode_started) * 1000.0, 3)
    before = timing.get("total", sum(value for key, value in timing.items() if key != "encode"))
    timing["total"] = round(before + timing["encode"], 3)


def server_timing(timing: dict[str, float]) -> str:
    """The stages as a Server-Timing header, so browser dev tools show them too."""
    return ", ".join(f"{stage};dur={timing[stage]}" for stage in (*STAGES, "total") if timing.get(stage))
