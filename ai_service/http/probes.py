"""Probes and scrapes at the root: /healthz (liveness), /readyz (readiness), /metrics (Prometheus).

All three are cheap (no model call, no body parsing) and exempt from API keys and rate limits, so a
load balancer or Kubernetes can poll them often; restrict /metrics at the proxy (see deploy/nginx.conf).
"""

from __future__ import annotations

import os

from flask import Blueprint, Response, jsonify

from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.observability import metrics
from ai_service.service.describe import readiness

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers HTTP. Restart the instance only when this fails."""
    return jsonify({"status": "ok", "pid": os.getpid()})


@bp.get("/readyz")
def readyz():
    """Readiness: every preloaded (default) model is loaded and warm in this worker."""
    body = readiness(runtime())
    return jsonify(body), 200 if body["status"] == "ready" else 503


@bp.get("/metrics")
def metrics_endpoint():
    """Prometheus text format, aggregated over all gunicorn workers."""
    current = runtime()
    if not current.settings.metrics:
        raise ServiceError("not_found", "Metrics are disabled (AI_SERVICE_METRICS=0).")
    metrics.update_process_gauges(current.device, force=True)
    payload, content_type = metrics.render()
    return Response(payload, content_type=content_type)
