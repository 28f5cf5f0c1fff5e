"""Per-endpoint body limits: an endpoint that takes more than the app-wide `AI_SERVICE_MAX_UPLOAD_MB` (bulk jobs)
raises the limits for its own request before anything reads the body, and a body over them is refused with the
setting that says so, not the app-wide one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from ai_service.errors import ServiceError

MIB = 1024 * 1024


def raise_body_limits(max_bytes: int, max_parts: int) -> None:
    """This request may send `max_bytes` and `max_parts` multipart parts (Flask reads both lazily, so this must run
    before the first look at `request.form`, `.files` or `.get_json()`)."""
    request.max_content_length = max_bytes
    request.max_form_parts = max_parts


class DecodedBodyTooLarge(RequestEntityTooLarge):
    """A compressed body (Content-Encoding) that decodes to more than the limit, however small it was on the wire."""


@contextmanager
def body_limit_errors(max_bytes: int, setting: str, max_parts: int, parts_setting: str) -> Iterator[None]:
    """werkzeug's bare 413 while reading the body → `payload_too_large` or `too_many_files` naming the setting."""
    try:
        yield
    except RequestEntityTooLarge as error:
        too_big = (request.content_length or 0) > max_bytes or request.content_length is None
        if too_big or isinstance(error, DecodedBodyTooLarge):
            raise ServiceError(
                "payload_too_large",
                f"The upload is larger than the {max_bytes / MIB:g} MB this endpoint accepts ({setting}).",
                {"limit": max_bytes, "setting": setting},
            ) from None
        raise ServiceError(
            "too_many_files",
            f"The form has more than {max_parts} parts; this endpoint accepts at most that many ({parts_setting}).",
            {"limit": max_parts},
        ) from None
