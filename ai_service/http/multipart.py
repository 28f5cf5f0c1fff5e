"""Multipart parsing without compiling two regular expressions per request.

werkzeug's MultipartDecoder compiles two patterns around each request's boundary. Every real client
(browsers, requests, curl) sends a fresh random boundary, so Python's `re` cache never hits and each
upload paid ~0.4 ms of pure-Python regex compilation — more than a small model's whole forward.
`BoundaryPattern` finds the boundary as a literal (`bytes.find`) and checks the line break before it
and the suffix after it with patterns compiled once; tests/test_multipart.py checks it returns what
werkzeug's own patterns return on generated bodies.

A small body (one 64 KiB read, as werkzeug reads it) that is plainly formed (CRLF line breaks, each part's
headers printable ASCII, `form-data; name="…"[; filename="…"]`) is split in one pass by `split_parts`
instead of werkzeug's event decoder: ~25 µs instead of ~55 µs for a small upload. Anything else (LF line
breaks, a preamble, quoted escapes, RFC 2231 names, a part's own Content-Length, a body near a limit) goes to
werkzeug with the same bytes, so only plain bodies take the shortcut and werkzeug's answers and errors stay
the reference (tests/test_multipart.py compares the two on generated bodies). `install()` makes werkzeug's
form parser use both, once per process (ai_service/server/process.py).
"""

from __future__ import annotations

import io
import re
from typing import IO, Any, NamedTuple

from werkzeug import formparser
from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.sansio.multipart import MultipartDecoder

#: The part of werkzeug's patterns after `--boundary`: `--` for the epilogue, optional horizontal
#: whitespace, and a line break (optional after the closing boundary).
SUFFIX = re.compile(rb"(--[^\S\n\r]*(?:\r\n|\n|\r)?|[^\S\n\r]*(?:\r\n|\n|\r))")


class BoundaryMatch:
    """The slice of re.Match that werkzeug uses: start(), end(), group(1)."""

    __slots__ = ("_start", "_end", "_tail")

    def __init__(self, start: int, end: int, tail: bytes) -> None:
        self._start, self._end, self._tail = start, end, tail

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self, index: int) -> bytes:
        if index != 1:
            raise IndexError("only group 1 (what follows the boundary) is recorded")
        return self._tail


class BoundaryPattern:
    """`(line break)--boundary(suffix)` as re.search finds it; the line break optional for the preamble."""

    def __init__(self, boundary: bytes, line_break_required: bool) -> None:
        self._literal = b"--" + boundary
        self._required = line_break_required

    def search(self, buffer: bytes | bytearray, pos: int = 0) -> BoundaryMatch | None:
        find = self._literal
        index = buffer.find(find, pos)
        while index != -1:
            start = self._start(buffer, index, pos)
            if start is not None:
                tail = SUFFIX.match(buffer, index + len(find))
                if tail is not None:
                    return BoundaryMatch(start, tail.end(), tail.group(1))
            index = buffer.find(find, index + 1)
        return None

    def _start(self, buffer: bytes | bytearray, index: int, pos: int) -> int | None:
        """Where the match begins: at the line break before the boundary (CRLF, LF or CR), leftmost first."""
        if index - 2 >= pos and buffer[index - 2 : index] == b"\r\n":
            return index - 2
        if index - 1 >= pos and buffer[index - 1 : index] in (b"\n", b"\r"):
            return index - 1
        return None if self._required else index


class LiteralBoundaryDecoder(MultipartDecoder):
    """werkzeug's decoder with the boundary patterns swapped for literal searches."""

    def __init__(self, boundary: bytes, *args, **kwargs) -> None:
        super().__init__(b"", *args, **kwargs)  # an empty boundary: werkzeug's patterns for it are cached
        self.boundary = boundary
        self.preamble_re = BoundaryPattern(boundary, line_break_required=False)
        self.boundary_re = BoundaryPattern(boundary, line_break_required=True)


#: Bodies up to this size may be split in one pass (werkzeug reads them in one read of its 64 KiB buffer too).
ONE_PASS_MAX = 64 * 1024
#: One header line of a part, printable ASCII: its name and its value without surrounding blanks.
HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e]*?)[ \t]*")
#: The Content-Disposition every browser and HTTP library sends, without escapes (anything else: werkzeug).
DISPOSITION = re.compile(rb'form-data; name="([^"\\]*)"(?:; filename="([^"\\]*)")?')


class Part(NamedTuple):
    """One part of a multipart body, as `split_parts` found it."""

    name: str
    filename: str | None
    content_type: str | None
    headers: list[tuple[str, str]]
    data: bytes


def split_parts(body: bytes, boundary: bytes) -> list[Part] | None:
    """The parts of a plainly formed multipart body, or None for anything else (werkzeug then parses it).

    Plain: no preamble, CRLF line breaks, a CRLF or `--` right after each boundary, nothing but an optional CRLF
    after the last one, printable-ASCII part headers with exactly one Content-Disposition of DISPOSITION's form,
    no Content-Length of a part's own, and no `--boundary` inside any part (where werkzeug's search would stop)."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter) or body[len(delimiter) : len(delimiter) + 2] != b"\r\n":
        return None
    separator = b"\r\n" + delimiter
    parts: list[Part] = []
    position = len(delimiter) + 2
    while True:
        blank = body.find(b"\r\n\r\n", position)
        if blank < 0:
            return None
        headers, disposition, content_type = [], None, None
        for line in body[position:blank].split(b"\r\n"):
            header = HEADER_LINE.fullmatch(line)
            if header is None:
                return None
            key, value = header[1].lower(), header[2]
            headers.append((header[1].decode(), value.decode()))
            if key == b"content-disposition":
                if disposition is not None:
                    return None
                disposition = DISPOSITION.fullmatch(value)
                if disposition is None:
                    return None
            elif key == b"content-type":
                if content_type is not None:
                    return None
                content_type = headers[-1][1]
            elif key == b"content-length":
                return None
        start = blank + 4
        end = body.find(separator, start)
        if disposition is None or end < 0 or body.find(delimiter, start, end) >= 0:
            return None
        filename = disposition[2]
        parts.append(
            Part(
                disposition[1].decode(),
                None if filename is None else filename.decode(),
                content_type,
                headers,
                body[start:end],
            )
        )
        after = end + len(separator)
        follows = body[after : after + 2]
        if follows == b"--":
            return parts if body[after + 2 :] in (b"", b"\r\n") else None
        if follows != b"\r\n":
            return None
        position = after + 2


class OnePassParser(formparser.MultiPartParser):
    """werkzeug's parser, with small plain bodies split in one pass (see the module docstring)."""

    def parse(
        self, stream: IO[bytes], boundary: bytes, content_length: int | None
    ) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        if content_length is None or content_length > min(ONE_PASS_MAX, self.buffer_size):
            return super().parse(stream, boundary, content_length)
        body = b"".join(iter(lambda: stream.read(self.buffer_size), b""))  # werkzeug's reads, to the end
        found = self.one_pass(body, boundary, content_length)
        return found if found is not None else super().parse(io.BytesIO(body), boundary, content_length)

    def one_pass(
        self, body: bytes, boundary: bytes, content_length: int
    ) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]] | None:
        """What werkzeug's parse returns for a plain body within every limit; None: let werkzeug parse it."""
        if self.max_form_memory_size is not None and len(body) > self.max_form_memory_size:
            return None
        parts = split_parts(body, boundary)
        if parts is None or (self.max_form_parts is not None and len(parts) > self.max_form_parts):
            return None
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []
        for part in parts:
            if part.filename is None:
                charset = self.get_part_charset(Headers(part.headers)) if part.content_type else "utf-8"
                fields.append((part.name, part.data.decode(charset, "replace")))
                continue
            container: Any = self.stream_factory(
                total_content_length=content_length,
                filename=part.filename,
                content_type=part.content_type,
                content_length=0,  # as werkzeug passes it for a part without a Content-Length of its own
            )
            container.write(part.data)
            container.seek(0)
            files.append((part.name, FileStorage(container, part.filename, part.name, headers=Headers(part.headers))))
        return self.cls(fields), self.cls(files)


def install() -> bool:
    """Point werkzeug's form parser at the literal decoder and the one-pass parser (idempotent); False if werkzeug
    changed shape."""
    probe = MultipartDecoder(b"probe")
    if not (
        hasattr(probe, "preamble_re")
        and hasattr(probe, "boundary_re")
        and getattr(formparser, "MultipartDecoder", None) in (MultipartDecoder, LiteralBoundaryDecoder)
        and callable(getattr(formparser.FormDataParser, "_parse_multipart", None))  # looks MultiPartParser up by name
        and callable(getattr(formparser.MultiPartParser, "get_part_charset", None))
    ):
        return False
    formparser.MultipartDecoder = LiteralBoundaryDecoder
    formparser.MultiPartParser = OnePassParser
    return True
