"""The literal boundary search must answer exactly what werkzeug's compiled patterns answer."""

from __future__ import annotations

import io

import pytest
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


# ---- the one-pass parser: whatever it answers, werkzeug answers the same -------------------------

BOUNDARY = b"b0und"
NAMES = ["model", "file", "a b", "a;b", "x=y", "p%20q", "é", "", "files[]", "a'b"]
HEADER_VARIANTS = [
    'Content-Disposition: form-data; name="{name}"',
    'Content-Disposition: form-data; name="{name}"; filename="{filename}"',
    'content-disposition: form-data; name="{name}"; filename="{filename}"',
    'Content-Disposition:form-data; name="{name}"',
    'Content-Disposition: form-data;name="{name}"',
    "Content-Disposition: form-data; name={name}",
    "Content-Disposition: form-data; name=\"{name}\"; filename*=UTF-8''{filename}",
    'Content-Disposition: form-data; name="{name}"; filename="a\\\\b"',
    'Content-Disposition: attachment; name="{name}"',
]
EXTRA_HEADERS = [
    "",
    "Content-Type: image/png",
    "Content-Type: text/plain; charset=iso-8859-1",
    "Content-Length: 3",
    "X-Other:  spaced  ",
    "Content-Type: a\r\nContent-Type: b",
    "Bad Header: x",
]
DATA = [
    b"",
    b"digits",
    b"\x89PNG\r\n\x1a\n",
    b"\r\n--b0und",
    b"--b0und",
    b"\r\n--b0undx",
    b"\n--b0und\r\n",
    b"\xff\xfe",
    b"caf\xc3\xa9",
    b"\r\n\r\n",
]
BREAKS = [b"\r\n", b"\n"]
ENDINGS = [b"--", b"--\r\n", b"--  \r\n", b"--epilogue", b""]


def mostly(draw, plain, odd):
    """Usually the plain choice (so the one-pass path runs), sometimes one of the odd ones."""
    return draw(st.sampled_from(odd)) if draw(st.integers(0, 9)) == 0 else plain


@st.composite
def bodies(draw):
    preamble = mostly(draw, b"", [b"preamble\r\n", b"\r\n"])
    line_break = mostly(draw, b"\r\n", BREAKS)
    chunks = [preamble]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(NAMES))
        variant = mostly(draw, draw(st.sampled_from(HEADER_VARIANTS[:2])), HEADER_VARIANTS)
        extra = mostly(draw, draw(st.sampled_from(EXTRA_HEADERS[:2])), EXTRA_HEADERS)
        header_block = variant.format(name=name, filename=draw(st.sampled_from(NAMES)))
        header_block += "\r\n" + extra if extra else ""
        data = draw(st.sampled_from(DATA))
        chunks.append(b"--" + BOUNDARY + line_break + header_block.encode() + b"\r\n\r\n" + data + b"\r\n")
    chunks.append(b"--" + BOUNDARY + mostly(draw, draw(st.sampled_from(ENDINGS[:2])), ENDINGS))
    return b"".join(chunks)


def werkzeug_answer(body: bytes, max_parts: int | None, max_memory: int | None):
    parser = multipart.OnePassParser.__mro__[1](max_form_memory_size=max_memory, max_form_parts=max_parts)
    try:
        return summary(parser.parse(io.BytesIO(body), BOUNDARY, len(body)))
    except Exception as error:  # noqa: BLE001 - the reference's error is part of its answer
        return type(error)


def summary(answer):
    form, files = answer
    return (
        list(form.items(multi=True)),
        [
            (name, file.filename, file.name, file.content_type, list(file.headers.items()), file.read())
            for name, file in files.items(multi=True)
        ],
    )


@settings(max_examples=1500, deadline=None)
@given(bodies(), st.sampled_from([None, 1, 2, 1000]), st.sampled_from([None, 20, 500_000]))
def test_one_pass_answers_what_werkzeug_answers(body, max_parts, max_memory):
    parser = multipart.OnePassParser(max_form_memory_size=max_memory, max_form_parts=max_parts)
    found = parser.one_pass(body, BOUNDARY, len(body))
    reference = werkzeug_answer(body, max_parts, max_memory)
    if found is not None:
        assert summary(found) == reference, body
    answer = parser.parse(io.BytesIO(body), BOUNDARY, len(body)) if not isinstance(reference, type) else None
    if answer is not None:
        assert summary(answer) == reference, body


def test_one_pass_takes_what_real_clients_send():
    body = (
        b'--b0und\r\nContent-Disposition: form-data; name="model"\r\n\r\ndigits\r\n'
        b'--b0und\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        b"\x89PNG\r\n\r\n--b0und--\r\n"
    )
    form, files = multipart.OnePassParser().one_pass(body, BOUNDARY, len(body))
    assert form["model"] == "digits" and files["file"].read() == b"\x89PNG\r\n"
    assert files["file"].mimetype == "image/png"


def test_large_or_unsized_bodies_go_to_werkzeug(monkeypatch):
    body = b'--b0und\r\nContent-Disposition: form-data; name="a"\r\n\r\n' + b"x" * 70_000 + b"\r\n--b0und--"
    monkeypatch.setattr(multipart.OnePassParser, "one_pass", lambda *args: pytest.fail("took the one-pass path"))
    for length in (len(body), None):
        form, _ = multipart.OnePassParser().parse(io.BytesIO(body), BOUNDARY, length)
        assert len(form["a"]) == 70_000


def test_installed_parser_serves_flask_requests():
    assert multipart.install() and formparser.MultiPartParser is multipart.OnePassParser
    from flask import Flask, request

    app = Flask(__name__)

    @app.post("/")
    def echo():
        return {"form": request.form.to_dict(), "file": request.files["file"].read().decode()}

    answer = app.test_client().post("/", data={"model": "digits", "file": (io.BytesIO(b"pixels"), "a.png")})
    assert answer.json == {"form": {"model": "digits"}, "file": "pixels"}
