"""POST /api/v1/predict (documented multipart, still accepts JSON) and POST /api/v1/predict/json (JSON only): images
in, one result per image out, as JSON or as the image itself.

Two documented operations, one per request body type, so that generated clients (openapi-generator) send the body
their operation names; both run answer_predict."""

from __future__ import annotations

import time

from flask import Response

from ai_service.api import bp
from ai_service.api.common import PredictCall, parse_predict_request, require_json_body
from ai_service.errors import ServiceError
from ai_service.http.context import caller, runtime
from ai_service.http.disposition import content_disposition
from ai_service.imaging.io import mime_type
from ai_service.observability.logging import annotate_request
from ai_service.schemas import PredictOptions, PredictResponse
from ai_service.service.meshes import MeshViews
from ai_service.service.outputs import (
    check_image_return,
    encode_output,
    finish_timing,
    image_output,
    output_name,
    serialize,
)
from ai_service.service.predict import PredictOutcome, predict
from ai_service.service.svg_outputs import add_svg, check_svg_output

STAGES = ("load", "cache", "decode", "preprocess", "queue", "forward", "postprocess", "encode")


@bp.post("/predict")
def predict_endpoint():
    return answer_predict(parse_predict_request())


@bp.post("/predict/json")
def predict_json_endpoint():
    """POST /predict with a JSON body (`image` or `images`), an operation of its own; other bodies are 415."""
    require_json_body()
    return answer_predict(parse_predict_request())


def answer_predict(call: PredictCall):
    """Run a parsed predict call and answer with JSON or the image (POST /predict/image shares it)."""
    current = runtime()
    info = current.resolve(call.options.model).info
    annotate_request(model=info.key, items=len(call.items))
    svg = call.options.output_format == "svg"
    if svg:
        check_svg_output(info.key, info.task)
    if call.options.return_ == "image":
        check_image_return(info.key, info.task, len(call.items), call.batch, call.options.output_format)
    options = call.options.model_options(current.settings.models.default_top_k)
    meshes = MeshViews(call.options.views, call.options.size)
    outcome = predict(
        current, info.key, call.items, options, caller("api"), cache=call.options.cache == "on", meshes=meshes
    )
    annotate_request(timing_ms=outcome.timing_ms)
    first = outcome.results[0]
    if not call.batch and "error" in first:
        raise ServiceError(first["error"]["code"], first["error"]["message"], first["error"].get("details"))
    started = time.perf_counter()
    if svg:
        add_svg(outcome.results, call.items, call.options.svg_background, current.settings.limits.max_pixels)
    if call.options.return_ == "image":
        data = first["svg"].encode("utf-8") if svg else encode_output(image_output(first), call.options)
        finish_timing(outcome.timing_ms, started)
        return image_response(data, first.get("filename") or "", outcome, call.options)
    outcome.results = [serialize(result, call.options) for result in outcome.results]
    finish_timing(outcome.timing_ms, started)
    # Validated against the documented schema, then written by pydantic-core straight to JSON bytes: a dict
    # dumped and re-encoded by Flask's json module cost a small model's request ~40 µs more (cProfile, digits).
    body = PredictResponse.model_validate(outcome.as_dict()).model_dump_json(by_alias=True, exclude_none=True)
    return Response(body, mimetype="application/json"), 200, {"Server-Timing": server_timing(outcome.timing_ms)}


def image_response(data: bytes, filename: str, outcome: PredictOutcome, options: PredictOptions) -> Response:
    """The encoded image as the whole body; model, size and timings travel in headers."""
    response = Response(data, mimetype=mime_type(options.output_format))
    response.headers.update(
        {
            "Content-Disposition": content_disposition(
                "inline", output_name(filename, outcome.model, options.output_format)
            ),
            "X-Model": f"{outcome.model}@{outcome.version}",
            "Server-Timing": server_timing(outcome.timing_ms),
        }
    )
    return response


def server_timing(timing: dict[str, float]) -> str:
    """The stages as a Server-Timing header, so browser dev tools show them too."""
    return ", ".join(f"{stage};dur={timing[stage]}" for stage in (*STAGES, "total") if timing.get(stage))
