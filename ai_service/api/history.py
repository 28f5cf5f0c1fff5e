"""GET/DELETE /api/v1/history…: recorded predictions, their stored images, and exports (ai_service.service.history).

History holds other clients' uploads and results, so when the server has API keys, reading it needs one too (the
security hook only asks for keys on state-changing methods); deleting always needs the admin token.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel

from ai_service.api import bp
from ai_service.api.admin import require_admin
from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.http.inputs import validate
from ai_service.http.security import require_api_key
from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.io import mime_type, sniff_format
from ai_service.schemas import HistoryEntry, HistoryExportQuery, HistoryPage, HistoryPageQuery
from ai_service.service.history import query
from ai_service.service.history.export import MEDIA_TYPES, export, filename

Query = TypeVar("Query", bound=BaseModel)
#: Stored images never change under their URL (content-addressed) but may be deleted: a day in private caches.
IMAGE_CACHE = "private, max-age=86400, immutable"
#: Formats a browser may show inline; anything else (SVG, PSD, TIFF, ...) is served as a download.
INLINE_FORMATS = frozenset({"png", "jpeg", "webp", "gif", "bmp"})


def require_reader() -> None:
    """With API keys configured, history is read with a key (or the admin token) like any private data."""
    require_api_key(runtime().settings.security, "Reading the history requires an API key")


def query_args(schema: type[Query]) -> Query:
    """The query string validated by `schema`; empty values mean "not set" (as HTML forms send them), and a bad
    value is `invalid_parameter` naming ["query", field], like a bad cursor."""
    fields = {key: value for key, value in request.args.items() if value != ""}
    try:
        return validate(schema, fields)
    except ServiceError as error:
        if error.code != "validation_error":
            raise
        issues = [{**issue, "loc": ["query", *issue["loc"]]} for issue in error.details]
        message = error.message.replace("Invalid request", "Invalid parameter", 1)
        raise ServiceError("invalid_parameter", message, issues) from None


@bp.get("/history")
def list_history():
    """A page of recorded predictions, newest first, filtered."""
    require_reader()
    page = query.page(runtime().history, query_args(HistoryPageQuery))
    return jsonify(HistoryPage.model_validate(page).model_dump(mode="json"))


@bp.get("/history/export")
def export_history():
    """Every matching row as CSV, JSON lines or Parquet, streamed as it is read."""
    require_reader()
    args = query_args(HistoryExportQuery)
    stream = export(runtime().history, args, args.format)
    response = Response(stream, content_type=MEDIA_TYPES[args.format])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename(args.format)}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass the chunks on as they come
    return response


# ids are 32 hex digits: `length=32` keeps /history/export from also matching <id> (OPTIONS's Allow)
@bp.get("/history/<string(length=32):id>")
def get_history_entry(id: str):  # noqa: A002  (the path parameter's documented name)
    """One recorded prediction."""
    require_reader()
    return jsonify(HistoryEntry.model_validate(query.entry(runtime().history, id)).model_dump(mode="json"))


@bp.delete("/history/<string(length=32):id>")
def delete_history_entry(id: str):  # noqa: A002
    """Forget one recorded prediction (admin only); its stored images go with the next retention run."""
    require_admin()
    query.remove(runtime().history, id)
    return "", 204


@bp.get("/history/<string(length=32):id>/input")
def history_input(id: str):  # noqa: A002
    """The uploaded image as received, when AI_SERVICE_HISTORY_IMAGES=all kept it."""
    require_reader()
    return image_response(query.stored_image(runtime().history, id, "input"), f"{id}-input")


@bp.get("/history/<string(length=32):id>/output")
def history_output(id: str):  # noqa: A002
    """The model's output image (PNG), when AI_SERVICE_HISTORY_IMAGES kept outputs."""
    require_reader()
    return image_response(query.stored_image(runtime().history, id, "output"), f"{id}-output")


def image_response(data: bytes, stem: str, cache: str = IMAGE_CACHE) -> Response:
    """Stored bytes with the type their magic numbers say; cacheable (`cache`) and revalidated by their sha256."""
    try:
        fmt: str | None = sniff_format(data)
    except ImageDecodeError:
        fmt = None
    kind = mime_type(fmt) if fmt else "application/octet-stream"
    disposition = "inline" if fmt in INLINE_FORMATS else "attachment"
    response = Response(data, mimetype=kind)
    response.headers["Content-Disposition"] = f'{disposition}; filename="{stem}.{fmt or "bin"}"'
    response.headers["Cache-Control"] = cache
    response.set_etag(hashlib.sha256(data).hexdigest())
    return response.make_conditional(request)
