"""What can go wrong, once: every error code with its HTTP status and meaning, and the exception that carries one.

Flask-free: the service layer raises `ServiceError`; `ai_service.http.errors` renders it as the
`{"error": {code, message, details}}` envelope, and the OpenAPI document and /docs list `ERRORS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple


class ErrorKind(NamedTuple):
    """The HTTP status an error code answers with, and when it happens (shown in the docs)."""

    status: int
    meaning: str


#: Every error code the service answers with. The handlers, the OpenAPI document and /docs read this table.
ERRORS: Final[Mapping[str, ErrorKind]] = {
    "validation_error": ErrorKind(
        422, "A field is missing, has the wrong type or is out of range; `details` names each field."
    ),
    "invalid_json": ErrorKind(
        400, "The body is not valid JSON (NaN, Infinity and a member repeated in one object are refused too)."
    ),
    "invalid_multipart": ErrorKind(
        400, "A multipart/form-data body that cannot be parsed: no boundary, a wrong boundary, or truncated."
    ),
    "unsupported_media_type": ErrorKind(
        415,
        "The request body is neither multipart/form-data nor application/json, or its Content-Encoding is not "
        "gzip or deflate.",
    ),
    "missing_file": ErrorKind(400, "No image was sent (multipart field `file`, or JSON `image` / `images`)."),
    "too_many_files": ErrorKind(413, "More images in one request than the configured limit."),
    "payload_too_large": ErrorKind(413, "The request body or the decoded images exceed the configured byte limit."),
    "remote_url_not_fetched": ErrorKind(422, "An image was given as a URL; the server never downloads URLs (no SSRF)."),
    "invalid_base64": ErrorKind(422, "A JSON image is neither valid base64 nor a base64 data: URL."),
    "empty_file": ErrorKind(400, "An image is zero bytes."),
    "unsupported_format": ErrorKind(415, "The bytes are not an image format the service reads."),
    "corrupt_image": ErrorKind(422, "A known image format whose data is damaged or truncated."),
    "invalid_image": ErrorKind(422, "The bytes could not be decoded as an image."),
    "unsafe_image": ErrorKind(
        422, "An image (SVG) that refers to the network or file system or expands without bound."
    ),
    "image_too_large": ErrorKind(413, "An image has more pixels than the configured limit."),
    "layer_not_found": ErrorKind(
        422, "`layer` names no layer of the PSD file (or the file has no layers); `details` lists the layers."
    ),
    "invalid_mesh": ErrorKind(
        422, "A 3D model (GLB/glTF, OBJ, STL, PLY, or a zip of one) whose data is damaged, truncated or inconsistent."
    ),
    "mesh_too_large": ErrorKind(
        413, "A 3D model or its zip declares more vertices, faces, nodes or unpacked bytes than the configured limits."
    ),
    "unsafe_mesh": ErrorKind(
        422, "A 3D model whose buffers or images refer to files or URLs outside the upload (never opened)."
    ),
    "unknown_model": ErrorKind(404, "No model of that name (or name@version) is registered."),
    "model_unavailable": ErrorKind(503, "The model is registered but failed to load; see GET /api/v1/models."),
    "overloaded": ErrorKind(503, "The model's queue is full; retry after the Retry-After header's seconds."),
    "out_of_memory": ErrorKind(503, "The device ran out of memory even in smaller batches; retry after Retry-After."),
    "timeout": ErrorKind(504, "The prediction did not finish within the configured time."),
    "unauthorized": ErrorKind(401, "A required API key or admin token is missing or wrong (see WWW-Authenticate)."),
    "missing_api_key": ErrorKind(401, "The server requires an API key (Authorization: Bearer <key> or X-API-Key)."),
    "invalid_api_key": ErrorKind(401, "The API key is not one the server accepts."),
    "admin_disabled": ErrorKind(403, "Model management is off: the server has no AI_SERVICE_ADMIN_TOKEN."),
    "forbidden": ErrorKind(403, "The credentials are valid but not allowed to do this."),
    "invalid_state": ErrorKind(
        409, "The lifecycle step does not fit the model's state (e.g. offloading an unloaded model)."
    ),
    "model_busy": ErrorKind(409, "Requests kept using the model, so it was not unloaded/offloaded; try again."),
    "rate_limited": ErrorKind(429, "Too many requests from this client; retry after the Retry-After header's seconds."),
    "not_found": ErrorKind(404, "No such endpoint, or no such resource (a history entry, a stored image)."),
    "history_disabled": ErrorKind(404, "Prediction history is off on this server (AI_SERVICE_HISTORY=off)."),
    "jobs_disabled": ErrorKind(503, "Bulk jobs are off on this server (AI_SERVICE_JOBS=off)."),
    "invalid_archive": ErrorKind(400, "The job's upload is not a zip or tar archive the service can read."),
    "archive_too_large": ErrorKind(
        413, "The job's archive exceeds a limit (upload size, unpacked size, member size, member count or ratio)."
    ),
    "unsafe_archive": ErrorKind(
        400, "The archive has a member that could escape or harm the server (traversal, link, device, nesting)."
    ),
    "method_not_allowed": ErrorKind(405, "The endpoint exists but not for this HTTP method."),
    "bad_request": ErrorKind(400, "The request could not be parsed."),
    "invalid_parameter": ErrorKind(422, "A parameter has an invalid value (non-body parameters)."),
    "request_timeout": ErrorKind(408, "The request body did not arrive in time."),
    "unprocessable": ErrorKind(422, "The request was understood but cannot be processed."),
    "unavailable": ErrorKind(503, "The service cannot take requests right now."),
    "http_error": ErrorKind(400, "Any other HTTP-level error; the status tells which."),
    "internal_error": ErrorKind(500, "A bug on our side; it has been logged with the request id."),
}

#: The code a bare HTTP status (werkzeug's 404, 405, 413, ...) is reported with.
HTTP_STATUS_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


class ServiceError(Exception):
    """A failure the caller can act on; its status comes from `ERRORS`, so a code means one thing everywhere."""

    def __init__(self, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None) -> None:
        if code not in ERRORS:
            raise KeyError(f"error code {code!r} is not in ai_service.errors.ERRORS")
        super().__init__(message)
        self.code, self.message, self.details, self.headers = code, message, details, dict(headers or {})

    @property
    def status(self) -> int:
        return ERRORS[self.code].status

    def body(self) -> dict[str, Any]:
        """The envelope's `error` object."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:  # an empty dict (a decode error without facts) is left out, like None
            error["details"] = self.details
        return error
