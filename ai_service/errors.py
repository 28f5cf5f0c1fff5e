"""One error shape for the API ({"error": {code, message, details}}) and friendly pages for humans."""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from loguru import logger
from werkzeug.exceptions import HTTPException

from ai_service.imaging.errors import ImageDecodeError

HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type", 422: "unprocessable",
    429: "rate_limited", 500: "internal_error", 503: "unavailable", 504: "timeout",
}


class APIError(Exception):
    """An error the client can act on; views raise it, the handler renders it."""

    def __init__(self, code: str, message: str, status: int = 400, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.details, self.headers = code, message, status, details, headers


def _wants_json() -> bool:
    """API paths always get JSON; pages get HTML."""
    return request.path.startswith("/api/")


def _render(error: APIError):
    """Render as JSON for the API, as the error page for a browser."""
    if _wants_json():
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.details is not None:
            body["details"] = error.details
        response = jsonify({"error": body})
    else:
        response = render_template("error.html", error=error)
    return response, error.status, error.headers or {}


def register_error_handlers(app: Flask) -> None:
    """Map every failure to the error shape; nothing a client sends may surface as a traceback."""

    @app.errorhandler(APIError)
    def handle_api_error(error: APIError):
        return _render(error)

    @app.errorhandler(ImageDecodeError)
    def handle_decode_error(error: ImageDecodeError):
        return _render(APIError(error.code, error.message, error.status, error.details or None))

    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException):
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            limit_mb = app.config["SETTINGS"].max_upload_mb
            message = f"The upload is larger than the {limit_mb:g} MB limit."
        elif status == 429:
            message = f"Too many requests: this client may send {message}; retry after Retry-After seconds."
        api_error = APIError(HTTP_CODES.get(status, "http_error"), message, status)
        response, status, _ = _render(api_error)
        headers = dict(error.get_headers()) if status == 405 else {}
        headers.pop("Content-Type", None)
        return response, status, headers

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        logger.opt(exception=error).error("unhandled exception on {} {}", request.method, request.path)
        return _render(APIError("internal_error", "The server failed to handle this request; it has been logged.", 500))
