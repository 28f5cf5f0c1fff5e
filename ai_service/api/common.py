"""Parsing POST /api/v1/predict (multipart or JSON with base64 images) into service inputs; API-only.

What the HTML pages parse too (validation, form uploads) lives in ai_service/http/inputs.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from flask import request
from werkzeug.exceptions import BadRequest

from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.http.inputs import check_file_count, form_fields, uploads_from_form, validate
from ai_service.schemas import PredictJSON, PredictOptions
from ai_service.service.upload import Upload

FORM_TYPES = ("multipart/form-data",)  # urlencoded cannot carry files: 415, not a confusing missing_file
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^(?:file|ftp|https?|s3|gs):", re.IGNORECASE)
BASE64_TEXT = re.compile(r"^[A-Za-z0-9+/=_\s-]*$")
DATA_URL = re.compile(r"^data:(?P<mime>[^,;]*)(?P<params>(?:;[^,;]*)*),", re.IGNORECASE)
BASE64_OVERHEAD = 4 / 3
JSON_SLACK_BYTES = 64 * 1024


@dataclass
class PredictCall:
    """A parsed predict request: each input's bytes (or why it is unusable), the options, batch or single."""

    items: list[Upload | ServiceError]
    options: PredictOptions
    batch: bool


def parse_predict_request() -> PredictCall:
    """Read POST /api/v1/predict as multipart/form-data or application/json (the only two bodies accepted)."""
    mimetype = request.mimetype
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return _parse_json()
    if mimetype in FORM_TYPES or (not mimetype and not request.content_length):
        # fields before the files, as JSON does (README: order of checks)
        options = validate(PredictOptions, form_fields())
        uploads = uploads_from_form()
        return choose_layers(PredictCall(list(uploads), options, batch=len(uploads) > 1))
    raise ServiceError(
        "unsupported_media_type",
        f"Send multipart/form-data (field `file`) or application/json "
        f"(`image` / `images` as base64); got {mimetype or 'no content type'}.",
    )


def is_json_body() -> bool:
    """application/json or a +json type: what the JSON twins (POST /predict/json, /jobs/json) take."""
    mimetype = request.mimetype
    return mimetype == "application/json" or mimetype.endswith("+json")


def require_json_body() -> None:
    """The JSON twins take JSON only: anything else is 415 before the body is read."""
    if not is_json_body():
        raise ServiceError(
            "unsupported_media_type",
            f"Send application/json; got {request.mimetype or 'no content type'} "
            "(multipart uploads go to the path without /json).",
        )


def _parse_json() -> PredictCall:
    """JSON body: options plus `image` or `images` as base64 / data: URLs; a bad item fails alone."""
    limit = runtime().settings.limits.max_content_length
    request.max_content_length = int(limit * BASE64_OVERHEAD) + JSON_SLACK_BYTES
    try:
        data = request.get_json()
    except BadRequest:
        raise ServiceError("invalid_json", "The request body is not valid JSON.") from None
    body = validate(PredictJSON, data, strict=True)
    texts = body.images if body.images is not None else [body.image]
    check_file_count(len(texts))
    field = "images" if body.images is not None else "image"
    items: list[Upload | ServiceError] = []
    for index, text in enumerate(texts):
        loc: list[str | int] = [field, index] if body.images is not None else [field]
        try:
            items.append(Upload(data=bytes_from_text(str(text), loc)))
        except ServiceError as error:
            items.append(error)
    total = sum(len(item.data) for item in items if isinstance(item, Upload))
    if total > limit:
        raise ServiceError(
            "payload_too_large",
            f"The decoded images total {total / 2**20:.2f} MB; the limit is "
            f"{runtime().settings.limits.max_upload_mb:g} MB per request.",
            {"limit": limit, "setting": "AI_SERVICE_MAX_UPLOAD_MB"},
        )
    return choose_layers(PredictCall(items, body, batch=body.images is not None))


def choose_layers(call: PredictCall) -> PredictCall:
    """Every upload reads the PSD layer(s) the options name (other formats: see decode_image)."""
    for item in call.items:
        if isinstance(item, Upload):
            item.layer, item.layers = call.options.layer, call.options.layers
    return call


def bytes_from_text(text: str, loc: list[str | int]) -> bytes:
    """Base64 or a base64 `data:` URL → bytes; URLs are refused because the server never fetches them."""
    text = text.strip()
    if looks_like_url(text):
        raise ServiceError(
            "remote_url_not_fetched",
            "Remote URLs are not fetched: the server never downloads images "
            "(that would allow server-side request forgery). Send the image bytes as base64, a "
            "data: URL, or a multipart upload.",
            {"loc": loc},
        )
    match = DATA_URL.match(text)
    if match:
        if ";base64" not in match["params"].lower():
            raise ServiceError(
                "invalid_base64", "data: URLs must be base64-encoded (data:image/png;base64,...).", {"loc": loc}
            )
        text = text[match.end() :]
    payload = re.sub(r"\s+", "", text)
    payload += "=" * (-len(payload) % 4)
    try:
        alphabet = b"-_" if ("-" in payload or "_" in payload) else None
        return base64.b64decode(payload, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(
            "invalid_base64", "The image is neither valid base64 nor a base64 data: URL.", {"loc": loc}
        ) from None


def looks_like_url(text: str) -> bool:
    """http(s)://, file:, ftp:, s3:, //host/... — anything but base64 and data: URLs."""
    if text[:5].lower() == "data:":
        return False
    return bool(URL_SCHEME.match(text)) or (text.startswith("//") and not BASE64_TEXT.match(text))
