"""GET /api/v1/models and /api/v1/health: what is served, and whether it is up."""
from __future__ import annotations

from flask import current_app, jsonify

from ai_service import __version__
from ai_service.api import bp
from ai_service.api.common import registry
from ai_service.devices import describe_device


@bp.get("/models")
def list_models():
    return jsonify({"models": registry().statuses()})


@bp.get("/health")
def health():
    models = registry()
    return jsonify({"status": "ok", "version": __version__, "device": describe_device(models.device),
                    "loaded_models": models.loaded_names(), "models": models.names()})
