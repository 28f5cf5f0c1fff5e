"""How every request body is read: Content-Encoding decoded within the body limit, malformed multipart named as such,
strict JSON (no NaN/Infinity, no repeated members: the app's JSON provider), and OPTIONS answered without an HTML body.

`ApiRequest` is the app's request class (ai_service/__init__.py); the views keep calling `request.files`,
`request.form` and `request.get_json()` and get these rules for free.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from typing import IO, Any

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from werkzeug.formparser import FormDataParser
from werkzeug.utils import cached_property
from werkzeug.wsgi import get_input_stream

from ai_service.errors import ServiceError
from ai_service.http.bodies import DecodedBodyTooLarge
from ai_service.http.spool import SpoolingRequest

#: Content-Encoding values a body may have; `deflate` takes the zlib format (RFC 9110) and raw deflate alike.
CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "identity": None}
CHUNK = 64 * 1024


def body_coding(header: str | None) -> str | None:
    """`gzip`, `deflate` or None (a plain body); anything else is 415, since the body cannot be read."""
    codings = [part.strip().lower() for part in (header or "").split(",") if part.strip()]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in CODINGS:
        return CODINGS[codings[0]]
    raise ServiceError(
        "unsupported_media_type",
        f"Content-Encoding {header[:60]!r} is not supported; send the body plain, gzip or deflate (one coding).",
        {"supported": sorted(CODINGS)},
    )


class DecodedStream(io.RawIOBase):
    """The decompressed body, read in bounded steps (a small bomb never becomes a large buffer) and refused with 413
    once it decodes to more than `limit` bytes."""

    def __init__(self, raw: IO[bytes], coding: str, limit: int | None) -> None:
        super().__init__()
        self.raw, self.coding, self.limit = raw, coding, limit
        self.decoder: Any = None
        self.pending = b""
        self.decoded = 0
        self.finished = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        while not self.pending and not self.finished:
            self._fill(max(size, CHUNK))
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _fill(self, most: int) -> None:
        """Decode at most `most` more bytes from the compressed input."""
        data = self.decoder.unconsumed_tail if self.decoder is not None else b""
        if not data and self.decoder is not None and self.decoder.eof:
            data = self.decoder.unused_data or self.raw.read(CHUNK)
            if not data:
                self.finished = True
                return
            if self.coding != "gzip":
                raise self._broken("there are bytes after the end of the compressed data")
            self.decoder = None  # gzip allows several members one after another
        if not data:
            data = self.raw.read(CHUNK)
            if not data:
                if self.decoder is None:
                    raise self._broken("the body is empty")
                raise self._broken("the body ends before the compressed data does (truncated upload?)")
        if self.decoder is None:
            self.decoder = zlib.decompressobj(self._wbits(data))
        try:
            out = self.decoder.decompress(data, most)
        except zlib.error as error:
            raise self._broken(str(error)) from None
        self.decoded += len(out)
        if self.limit is not None and self.decoded > self.limit:
            raise DecodedBodyTooLarge()
        self.pending += out

    def _wbits(self, head: bytes) -> int:
        """gzip; or deflate with its zlib header (RFC 9110) or without one (what some clients send)."""
        if self.coding == "gzip":
            return 16 + zlib.MAX_WBITS
        zlib_header = len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
        return zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS

    def _broken(self, why: str) -> ServiceError:
        return ServiceError("bad_request", f"The body is not valid {self.coding} data (Content-Encoding): {why}.")


def multipart_problem(error: ValueError, boundary: str) -> str:
    """What werkzeug's parse error means for the person who sent the body."""
    text = str(error)
    if text == "Missing boundary":
        return "The Content-Type multipart/form-data has no `boundary` parameter; let your HTTP client set the header."
    if text.endswith("State.PREAMBLE"):
        return (
            f"The body does not contain the boundary its Content-Type declares (boundary={boundary[:70]!r}): "
            "the header and the body disagree."
        )
    if "cannot parse beyond" in text:
        return f"The multipart body ends before its closing boundary (--{boundary[:70]}--): truncated upload?"
    return f"The multipart body could not be parsed: {text}."


class StrictFormDataParser(FormDataParser):
    """werkzeug's parser, except that a malformed multipart body is a 400 `invalid_multipart` saying what is wrong
    instead of an empty form (which looked like `missing_file`)."""

    def parse(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str] | None = None
    ) -> Any:
        if mimetype != "multipart/form-data" or content_length == 0:
            return super().parse(stream, mimetype, content_length, options)
        counted = CountingReader(stream)
        try:
            _, form, files = self._parse_multipart(counted, mimetype, content_length, options or {})  # type: ignore[arg-type]
        except ValueError as error:
            # no byte at all (chunked, so no Content-Length: 0) is nothing sent, not a malformed body
            if not counted.seen and str(error) != "Missing boundary":
                return stream, self.cls(), self.cls()
            message = multipart_problem(error, (options or {}).get("boundary", ""))
            raise ServiceError("invalid_multipart", message) from None
        return stream, form, files


class CountingReader:
    """The body as werkzeug's multipart parser reads it (`read` only), remembering whether any byte came."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.seen = stream, False

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.seen = self.seen or bool(data)
        return data


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose members each appear once: with a repeated one, which value counts would be a guess."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the member {key[:60]!r} appears more than once")
        found[key] = value
    return found


class StrictJSONProvider(DefaultJSONProvider):
    """The app's JSON provider (Flask hands it to every request as `json_module`): standard JSON only in."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return json.loads(s, parse_constant=reject_constant, object_pairs_hook=unique_members, **kwargs)


class ApiRequest(SpoolingRequest):
    """The app's request: bodies decoded per Content-Encoding, strict multipart errors, strict JSON."""

    form_data_parser_class = StrictFormDataParser

    @cached_property
    def stream(self) -> IO[bytes]:
        """werkzeug's limited stream, decompressed when the body has a Content-Encoding (the decoded size counts)."""
        if self.shallow:
            raise RuntimeError("This request was created with 'shallow=True'; the input stream is off.")
        coding = body_coding(self.headers.get("Content-Encoding"))
        raw = get_input_stream(self.environ, max_content_length=self.max_content_length)
        return raw if coding is None else DecodedStream(raw, coding, self.max_content_length)  # type: ignore[return-value]

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            return super().on_json_loading_failed(e)
        raise ServiceError("invalid_json", f"The request body is not valid JSON: {e}.")


def install_parsing(app: Flask) -> None:
    """Use ApiRequest and strict JSON; answer OPTIONS with an empty body and no Content-Type (so no HTML CSP)."""
    app.request_class = ApiRequest
    app.json = StrictJSONProvider(app)
    default: Callable[[], Response] = app.make_default_options_response

    def options_response() -> Response:
        response = default()
        del response.headers["Content-Type"]
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]
