"""POST /api/v1/predict/image: POST /predict with `return=image`, an operation of its own so that generated clients
read the body as bytes (one operation, one kind of success body)."""

from __future__ import annotations

from flask import request

from ai_service.api import bp
from ai_service.api.common import parse_predict_request
from ai_service.api.predict import answer_predict
from ai_service.errors import ServiceError
from ai_service.http.inputs import form_fields, validate
from ai_service.schemas import PredictImageForm


@bp.post("/predict/image")
def predict_image_endpoint():
    """Multipart only, every field PredictImageForm names and no `return` (the path says it)."""
    if request.mimetype != "multipart/form-data":
        raise ServiceError(
            "unsupported_media_type",
            f"Send multipart/form-data (field `file`); got {request.mimetype or 'no content type'}.",
        )
    validate(PredictImageForm, {**form_fields(), "file": b""})  # unknown fields (`return` included) are refused here
    call = parse_predict_request()
    call.options = call.options.model_copy(update={"return_": "image"})
    return answer_predict(call)
