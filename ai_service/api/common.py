"""Request parsing shared by the JSON API and the HTML form: uploads, model choice, options."""
from __future__ import annotations

from typing import Any

from flask import current_app, request

from ai_service.config import Settings
from ai_service.errors import APIError
from ai_service.inference import Upload
from ai_service.models.registry import ModelRegistry


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def registry() -> ModelRegistry:
    return current_app.extensions["registry"]


def uploads_from_form() -> list[Upload]:
    """The `file` parts of a multipart request, with clear errors for the usual mistakes."""
    files = [f for f in request.files.getlist("file")]
    if not files:
        other = sorted(request.files)
        hint = f" (got file field(s) {other})" if other else ""
        raise APIError("missing_file", f"Send the image as a multipart/form-data field named 'file'{hint}.", 400)
    limit = settings().max_files
    if len(files) > limit:
        raise APIError("too_many_files", f"At most {limit} files per request; got {len(files)}.", 413,
                       {"limit": limit})
    return [Upload(data=f.read(), filename=(f.filename or "")[:255]) for f in files]


def model_name_from(values: Any) -> str:
    """The requested model, checked against the registry."""
    name = (values.get("model") or settings().default_model).strip()
    if name not in registry().names():
        raise APIError("unknown_model", f"No model named {name!r}. Available: {', '.join(registry().names())}.",
                       404, {"model": name, "available": registry().names()})
    return name


def top_k_from(values: Any) -> int:
    """`top_k` as a positive integer (default from settings)."""
    raw = values.get("top_k")
    if raw in (None, ""):
        return settings().default_top_k
    try:
        top_k = int(raw)
    except (TypeError, ValueError):
        raise APIError("invalid_parameter", f"top_k must be a whole number, got {str(raw)[:40]!r}.", 422,
                       {"parameter": "top_k"}) from None
    if not 1 <= top_k <= 1000:
        raise APIError("invalid_parameter", "top_k must be between 1 and 1000.", 422, {"parameter": "top_k"})
    return top_k
