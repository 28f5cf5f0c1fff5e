"""GET / (upload page) and POST /predict (plain form post → server-rendered result; works without JavaScript).

The form runs models through the same service call as POST /api/v1/predict, so a result page and a JSON
answer never disagree.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from flask import render_template, request
from PIL import Image

from ai_service.errors import ServiceError
from ai_service.http.context import caller, runtime
from ai_service.http.inputs import uploads_from_form, validate
from ai_service.imaging.encode import preview_data_url
from ai_service.imaging.errors import ImageDecodeError
from ai_service.schemas import PredictOptions
from ai_service.service.describe import list_models
from ai_service.service.outputs import finish_timing, output_name, serialize
from ai_service.service.predict import predict
from ai_service.service.upload import Upload
from ai_service.web import bp

FORM_OPTIONS = ("model", "top_k", "fit", "output_format", "quality")


def model_choices() -> list[dict[str, Any]]:
    """Registry statuses plus the value the form sends: the bare name for a default version, else name@version."""
    return [
        {**status, "ref": status["name"] if status.get("default") else status.get("key", status["name"])}
        for status in list_models(runtime())
    ]


def _form_page(error: ServiceError | None = None, status: int = 200):
    return render_template(
        "index.html",
        models=model_choices(),
        settings=runtime().settings,
        error=error,
        selected_model=request.values.get("model"),
    ), status


@bp.get("/")
def index():
    return _form_page()


def form_options(form: Mapping[str, str]) -> PredictOptions:
    """The form's fields as API options; the background color counts only when 'Solid color' is chosen."""
    fields = {key: form[key] for key in FORM_OPTIONS if form.get(key)}
    if form.get("background_mode") == "color" and form.get("background"):
        fields["background"] = form["background"]
    return validate(PredictOptions, fields)


def present(result: dict[str, Any], upload: Upload, model: str, options: PredictOptions) -> dict[str, Any]:
    """What the result page shows: the input preview, outputs as data URLs, output size, download names."""
    image = result.get("image")
    shown = serialize(result, options)
    if isinstance(image, Image.Image):
        shown.update(
            image_url=shown.pop("image"),
            image_width=image.width,
            image_height=image.height,
            image_format=options.output_format,
        )
    if isinstance(shown.get("mask"), str):
        shown["mask_url"] = shown.pop("mask")
    shown["download_name"] = output_name(upload.filename, model, options.output_format if image is not None else "png")
    try:
        shown["preview"] = preview_data_url(upload.data, runtime().settings.limits.max_pixels)
    except ImageDecodeError:
        shown["preview"] = None
    return shown


@bp.post("/predict")
def predict_form():
    current = runtime()
    try:
        uploads = uploads_from_form()
        options = form_options(request.form)
        model_options = options.model_options(current.settings.models.default_top_k)
        outcome = predict(current, options.model, uploads, model_options, caller("web"))
    except ServiceError as error:
        return _form_page(error, error.status)
    encode_started = time.perf_counter()
    shown = [
        result if "error" in result else present(result, upload, outcome.model, options)
        for upload, result in zip(uploads, outcome.results)
    ]
    finish_timing(outcome.timing_ms, encode_started)
    used = next((m for m in list_models(current) if m["name"] == outcome.model and m["version"] == outcome.version), {})
    return render_template(
        "result.html", outcome=dataclasses.replace(outcome, results=shown), description=used.get("description")
    )
