"""The one place errors become HTTP: a ServiceError (or werkzeug's HTTPException) → JSON envelope or error page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify, render_template, request
from loguru import logger
from werkzeug.exceptions import HTTPException

from ai_service.errors import HTTP_STATUS_CODES, ServiceError

#: Blueprints for machines (load balancers, scrapers) whose errors are JSON although they live outside /api/.
JSON_BLUEPRINTS = frozenset({"probes"})


def _wants_json() -> bool:
    """API paths and the probes always get JSON; pages get HTML."""
    return request.path.startswith("/api/") or request.blueprint in JSON_BLUEPRINTS


def render_error(code: str, message: str, status: int, details: Any = None, headers: Mapping[str, str] | None = None):
    """JSON `{"error": {...}}` for the API, the error page for a browser."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    if _wants_json():
        response = jsonify({"error": body})
    else:
        response = render_template("error.html", error=body, status=status)
    return response, status, dict(headers or {})


def register_error_handlers(app: Flask, max_upload_mb: float) -> None:
    """Map every failure to the error shape; nothing a client sends may surface as a traceback.

    `max_upload_mb` is the limit a 413 names, in its message and in bytes as `details.limit` (werkzeug knows
    neither)."""
    upload_limit = int(max_upload_mb * 1024 * 1024)

    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError):
        return render_error(error.code, error.message, error.status, error.details or None, error.headers)

    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException):
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            message = f"The upload is larger than the {max_upload_mb:g} MB limit."
        elif status == 429:
            message = f"Too many requests: this client may send {message}; retry after Retry-After seconds."
        headers = dict(error.get_headers()) if status == 405 else {}
        headers.pop("Content-Type", None)
        details = {"limit": upload_limit, "setting": "AI_SERVICE_MAX_UPLOAD_MB"} if status == 413 else None
        return render_error(HTTP_STATUS_CODES.get(status, "http_error"), message, status, details, headers)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        logger.opt(exception=error).error("unhandled exception on {} {}", request.method, request.path)
        return render_error("internal_error", "The server failed to handle this request; it has been logged.", 500)
