"""POST /api/v1/convert: an image plus a list of operations -> the converted image (or JSON with a data URL).

Multipart fields: `file` (required), `operations` (JSON list, e.g. [{"op": "resize", "width": 224}]),
`format` (png/jpeg/webp), `quality` (1-100), `response` (image/json; `Accept: application/json` also
selects JSON), `download` (1 for an attachment). Every bad value is a 4xx naming the parameter.
"""

from __future__ import annotations

from flask import Response, jsonify, request

from ai_service.api import bp
from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.service.convert import convert


def uploaded_file() -> tuple[bytes, str]:
    """The single `file` part (bytes, filename) with clear errors for the usual mistakes."""
    files = request.files.getlist("file")
    if not files:
        other = sorted(request.files)
        hint = f" (got file field(s) {other})" if other else ""
        raise ServiceError(
            "missing_file", f"Send the image as a multipart/form-data field named 'file'{hint}.", {"parameter": "file"}
        )
    if len(files) > 1:
        raise ServiceError("too_many_files", "/convert takes exactly one file.", {"parameter": "file"})
    return files[0].read(), (files[0].filename or "")[:255]


def wants_json() -> bool:
    """`response=json`, or an Accept header that prefers JSON to images."""
    choice = (request.values.get("response") or "").lower()
    if choice not in ("", "image", "json"):
        raise ServiceError(
            "invalid_parameter", f"response: must be 'image' or 'json'; got {choice[:40]!r}", {"parameter": "response"}
        )
    if choice:
        return choice == "json"
    return request.accept_mimetypes.best_match(["image/png", "application/json"]) == "application/json"


@bp.post("/convert")
def convert_endpoint():
    """Decode (magic-number sniffing, limits), run the operations, encode."""
    as_json = wants_json()
    data, filename = uploaded_file()
    outcome = convert(
        data,
        filename,
        request.values.get("operations"),
        request.values.get("format"),
        request.values.get("quality"),
        runtime().settings.limits.max_pixels,
    )
    if as_json:
        return jsonify(outcome.as_dict())
    response = Response(outcome.data, mimetype=outcome.content_type)
    disposition = "attachment" if request.values.get("download") in ("1", "true", "yes") else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{outcome.filename}"'
    response.headers["X-Image-Width"] = str(outcome.width)
    response.headers["X-Image-Height"] = str(outcome.height)
    response.headers["X-Image-Mode"] = outcome.mode
    return response
