"""POST /api/v1/convert: an image plus a list of operations -> the converted image (or JSON with a data URL).

Multipart fields: `file` (required), `operations` (JSON list, e.g. [{"op": "resize", "width": 224}]),
`format` (png/jpeg/webp), `quality` (1-100), `response` (image/json; `Accept: application/json` also
selects JSON), `download` (true/1 for an attachment). They are validated by ai_service.schemas.convert like
/predict's: unknown fields and bad values are a 422 `validation_error` listing each field.
"""

from __future__ import annotations

from flask import Response, jsonify, request

from ai_service.api import bp
from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.http.disposition import content_disposition
from ai_service.http.inputs import form_fields as multipart_fields
from ai_service.schemas.convert import ConvertOptions
from ai_service.service.convert import convert, convert_options


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


def form_fields() -> dict[str, str]:
    """Every form field but the file, by the one multipart rule (ai_service/schemas/multipart.py): an empty value is
    validated like any other, a repeated field is refused."""
    return {key: value for key, value in multipart_fields().items() if key != "file"}


def wants_json(options: ConvertOptions) -> bool:
    """`response=json`, or an Accept header that prefers JSON to images."""
    if options.response:
        return options.response == "json"
    return request.accept_mimetypes.best_match(["image/png", "application/json"]) == "application/json"


@bp.post("/convert")
def convert_endpoint():
    """Validate the fields (pydantic), then decode (magic-number sniffing, limits), run the operations, encode."""
    max_pixels = runtime().settings.limits.max_pixels
    options = convert_options(form_fields(), max_pixels)
    data, filename = uploaded_file()
    outcome = convert(data, filename, options, max_pixels)
    if wants_json(options):
        return jsonify(outcome.as_dict())
    response = Response(outcome.data, mimetype=outcome.content_type)
    disposition = "attachment" if options.download else "inline"
    response.headers["Content-Disposition"] = content_disposition(disposition, outcome.filename)
    response.headers["X-Image-Width"] = str(outcome.width)
    response.headers["X-Image-Height"] = str(outcome.height)
    response.headers["X-Image-Mode"] = outcome.mode
    return response
