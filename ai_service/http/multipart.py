"""Multipart parsing without compiling two regular expressions per request.

werkzeug's MultipartDecoder compiles two patterns around each request's boundary. Every real client
(browsers, requests, curl) sends a fresh random boundary, so Python's `re` cache never hits and each
upload paid ~0.4 ms of pure-Python regex compilation — more than a small model's whole forward.
`BoundaryPattern` finds the boundary as a literal (`bytes.find`) and checks the line break before it
and the suffix after it with patterns compiled once; tests/test_multipart.py checks it returns what
werkzeug's own patterns return on generated bodies. `install()` makes werkzeug's form parser use it, once
per process (ai_service/server/process.py).
"""

from __future__ import annotations

import re

from werkzeug import formparser
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


def install() -> bool:
    """Point werkzeug's form parser at the literal decoder (idempotent); False if werkzeug changed shape."""
    probe = MultipartDecoder(b"probe")
    if not (
        hasattr(probe, "preamble_re")
        and hasattr(probe, "boundary_re")
        and getattr(formparser, "MultipartDecoder", None) in (MultipartDecoder, LiteralBoundaryDecoder)
    ):
        return False
    formparser.MultipartDecoder = LiteralBoundaryDecoder
    return True
