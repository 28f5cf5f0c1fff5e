"""GET /api/v1/system and /health: where the service runs, its memory, and whether it is up."""

from __future__ import annotations

from flask import jsonify

from ai_service.api import bp
from ai_service.http.context import runtime
from ai_service.service import describe


@bp.get("/system")
def system():
    """Devices, memory counters, process RSS, the memory budget and every model's lifecycle state."""
    return jsonify(describe.system_report(runtime()))


@bp.get("/health")
def health():
    """Version, device, and which models are loaded."""
    return jsonify(describe.health(runtime()))
