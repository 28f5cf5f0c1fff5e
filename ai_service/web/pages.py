"""GET / (upload form) and POST /predict (plain form post → result page)."""
from __future__ import annotations

from flask import render_template, request

from ai_service.api.common import model_name_from, registry, settings, top_k_from, uploads_from_form
from ai_service.errors import APIError
from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.encode import preview_data_url
from ai_service.inference import predict
from ai_service.web import bp


def _form_page(error: APIError | None = None, status: int = 200):
    return render_template("index.html", models=registry().statuses(), settings=settings(), error=error), status


@bp.get("/")
def index():
    return _form_page()


@bp.post("/predict")
def predict_form():
    try:
        uploads = uploads_from_form()
        name = model_name_from(request.form)
        outcome = predict(registry(), name, uploads, {"top_k": top_k_from(request.form)}, settings().max_pixels)
    except APIError as error:
        return _form_page(error, error.status)
    for upload, result in zip(uploads, outcome["results"]):
        if "error" not in result:
            try:
                result["preview"] = preview_data_url(upload.data, settings().max_pixels)
            except ImageDecodeError:
                result["preview"] = None
    return render_template("result.html", outcome=outcome, models=registry().statuses())
