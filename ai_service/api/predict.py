"""POST /api/v1/predict: multipart `file` (repeatable), `model`, `top_k`."""
from __future__ import annotations

from flask import jsonify, request
from PIL import Image

from ai_service.api import bp
from ai_service.api.common import model_name_from, registry, settings, top_k_from, uploads_from_form
from ai_service.errors import APIError
from ai_service.imaging.encode import to_data_url
from ai_service.inference import predict


def serialise(result: dict) -> dict:
    """Make a model's per-image result JSON-ready: PIL images become PNG data URLs."""
    return {key: to_data_url(value) if isinstance(value, Image.Image) else value for key, value in result.items()}


@bp.post("/predict")
def predict_endpoint():
    uploads = uploads_from_form()
    name = model_name_from(request.form)
    outcome = predict(registry(), name, uploads, {"top_k": top_k_from(request.form)}, settings().max_pixels)
    results = [serialise(result) for result in outcome.pop("results")]
    if len(results) > 1:
        return jsonify({**outcome, "results": results})
    only = results[0]
    if "error" in only:
        error = only["error"]
        raise APIError(error["code"], error["message"], only["status"])
    return jsonify({**outcome, **only})
