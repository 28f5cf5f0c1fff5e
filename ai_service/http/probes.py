"""Probes and scrapes at the root: /healthz (liveness), /readyz (readiness), /metrics (Prometheus).

All three are cheap (no model call, no body parsing) and exempt from API keys and rate limits, so a
load balancer or Kubernetes can poll them often; restrict /metrics at the proxy (see deploy/nginx.conf).
"""
from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify

from ai_service.http.context import runtime
from ai_service.observability import metrics
from ai_service.models.registry import ModelLoadError, ModelRegistry, UnknownModelError

bp = Blueprint("probes", __name__)


def required_models() -> tuple[str, ...]:
    """Models that must be loaded before this worker takes traffic: the preloaded ones."""
    return current_app.config["SETTINGS"].models.preload


def model_states(registry: ModelRegistry, names: tuple[str, ...]) -> dict[str, str]:
    """State of each required model; a name the registry does not know is reported as 'unknown'."""
    states = {}
    for name in names:
        try:
            states[name] = registry.resolve(name).state
        except UnknownModelError:
            states[name] = "unknown"
        except ModelLoadError:
            states[name] = "failed"
    return states


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers HTTP. Restart the instance only when this fails."""
    return jsonify({"status": "ok", "pid": os.getpid()})


@bp.get("/readyz")
def readyz():
    """Readiness: every preloaded (default) model is loaded and warm in this worker."""
    registry = runtime().registry
    states = model_states(registry, required_models())
    ready = all(state == "loaded" for state in states.values())
    body = {"status": "ready" if ready else "not_ready", "pid": os.getpid(), "models": states}
    if not ready:
        waiting = sorted(name for name, state in states.items() if state != "loaded")
        body["message"] = f"Waiting for model(s) {', '.join(waiting)} to load."
    return jsonify(body), 200 if ready else 503


@bp.get("/metrics")
def metrics_endpoint():
    """Prometheus text format, aggregated over all gunicorn workers."""
    if not current_app.config["SETTINGS"].metrics:
        return jsonify({"error": {"code": "not_found", "message": "Metrics are disabled (AI_SERVICE_METRICS=0)."}}), 404
    metrics.update_process_gauges(runtime().device, force=True)
    payload, content_type = metrics.render()
    return Response(payload, content_type=content_type)
