"""GET /api/v1/models, /models/<ref> and the models' example inputs: what is served, in which version and state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import jsonify, url_for

from ai_service.api import bp
from ai_service.api.history import image_response
from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.service import describe

#: Example files may change with an upgrade or an edited models file: an hour in any cache, then revalidated.
EXAMPLE_CACHE = "public, max-age=3600"


def with_example_urls(status: dict[str, Any]) -> dict[str, Any]:
    """A registry status with each example's file name turned into {name, url} (the registry knows no routes)."""
    names = status.get("examples") or []
    urls = [url_for("api.model_example", ref=status["key"], example=name) for name in names]
    return {**status, "examples": [{"name": name, "url": url} for name, url in zip(names, urls)]}


@bp.get("/models")
def list_models():
    return jsonify({"models": [with_example_urls(status) for status in describe.list_models(runtime())]})


@bp.get("/models/<ref>")
def model_detail(ref: str):
    """One model by name (newest version) or name@version, with the versions served under that name."""
    return jsonify(with_example_urls(describe.model_detail(runtime(), ref)))


@bp.get("/models/<ref>/examples/<example>")
def model_example(ref: str, example: str):
    """One of the model's example input images, by file name."""
    path: Path | None = runtime().resolve(ref).info.example(example)
    try:
        data = path.read_bytes() if path is not None else None
    except OSError:
        data = None
    if data is None:
        raise ServiceError("not_found", f"Model {ref} has no example named {example!r}.")
    return image_response(data, Path(example).stem, EXAMPLE_CACHE)
