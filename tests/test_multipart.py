"""The literal boundary search must answer exactly what werkzeug's compiled patterns answer."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug import formparser
from werkzeug.sansio.multipart import MultipartDecoder

from ai_service.http import multipart
from ai_service.http.multipart import BoundaryPattern, LiteralBoundaryDecoder

PIECES = [b"\r\n", b"\n", b"\r", b" ", b"\t", b"-", b"--", b"x", b"ab", b"--b0und", b"b0und", b"--b0und--"]


def as_tuple(match):
    return None if match is None else (match.start(), match.end(), bytes(match.group(1)))


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=24), st.integers(0, 30), st.booleans())
def test_literal_search_matches_werkzeugs_patterns(pieces, pos, as_bytearray):
    buffer = b"".join(pieces)
    subject = bytearray(buffer) if as_bytearray else buffer
    reference = MultipartDecoder(b"b0und")
    ours = LiteralBoundaryDecoder(b"b0und")
    for theirs, mine in ((reference.preamble_re, ours.preamble_re), (reference.boundary_re, ours.boundary_re)):
        assert as_tuple(mine.search(subject, pos)) == as_tuple(theirs.search(subject, pos)), (buffer, pos)


def test_boundaries_made_of_dashes_and_regex_characters():
    for boundary in (b"----", b"a.b*c+(d)", b"-x-", b"=_Part_0_1.2"):
        reference = MultipartDecoder(boundary)
        for body in (
            b"--" + boundary + b"\r\n",
            b"\r\n---" + boundary + b"--",
            b"\n--" + boundary + b" \t\r\n",
            b"x--" + boundary + b"\r\n--" + boundary + b"--\r\n",
            b"----" + boundary * 2 + b"\r",
        ):
            for required in (False, True):
                theirs = reference.boundary_re if required else reference.preamble_re
                assert as_tuple(BoundaryPattern(boundary, required).search(body)) == as_tuple(theirs.search(body))


def test_installed_parser_reads_fields_and_files_with_fresh_boundaries():
    assert multipart.install() and formparser.MultipartDecoder is LiteralBoundaryDecoder
    for boundary in ("a1b2", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "x" * 70):
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ndigits\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                f"Content-Type: image/png\r\n\r\n"
            ).encode()
            + b"\x89PNG\r\n--not-the-boundary\r\n"
            + f"\r\n--{boundary}--\r\n".encode()
        )
        parser = formparser.FormDataParser()
        _, form, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body), {"boundary": boundary})
        assert form["model"] == "digits"
        assert files["file"].read() == b"\x89PNG\r\n--not-the-boundary\r\n"
