"""GET /api/v1/models and /models/<ref>: what is served, in which version, and in which state."""

from __future__ import annotations

from flask import jsonify

from ai_service.api import bp
from ai_service.http.context import runtime
from ai_service.service import describe


@bp.get("/models")
def list_models():
    return jsonify({"models": describe.list_models(runtime())})


@bp.get("/models/<ref>")
def model_detail(ref: str):
    """One model by name (newest version) or name@version, with the versions served under that name."""
    return jsonify(describe.model_detail(runtime(), ref))
