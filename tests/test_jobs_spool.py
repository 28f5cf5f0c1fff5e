"""A bulk job's `file` parts share one temporary file per request (ai_service.http.spool): hundreds of parts, small
and over werkzeug's 500 KB, arrive byte for byte with a handful of file descriptors and far less memory than the body;
every other endpoint keeps werkzeug's own streams."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tracemalloc
import uuid
import zipfile
from pathlib import Path

import pytest
from conftest import encode
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from ai_service import create_app
from ai_service.http import spool
from ai_service.http.spool import SharedSpool, SpoolingRequest, SpoolWindow
from ai_service.storage.schema import JobInput

MIB = 1024 * 1024
PARTS = 300
SMALL, LARGE = 60 * 1024, 640 * 1024  # werkzeug keeps a part under 500 KB in memory, gives a larger one a file


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def app(home: Path):
    # no local executor: nothing but the request allocates while it is measured
    app = create_app(
        {"TESTING": True, "home": str(home), "log_level": "WARNING", "log_to_file": False, "jobs_local_workers": 0}
    )
    yield app
    app.extensions["ai_service"].close()


@pytest.fixture(scope="module")
def uploads(digits_split) -> list[tuple[str, bytes]]:
    """300 distinct PNGs (a digit, then random padding past IEND): every tenth over 500 KB, ~36 MiB in all."""
    from ai_service.models.builtin.digits_training import render_digit

    rng = random.Random(7)
    images = digits_split.test_images
    files = []
    for index in range(PARTS):
        png = encode(render_digit(images[index % len(images)], 32))
        size = LARGE if index % 10 == 3 else SMALL
        files.append((f"folder/sub/{index:04d}.png", png + rng.randbytes(size + rng.randrange(4096) - len(png))))
    return files


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """The body a browser sends for a folder upload, built by hand so the test client adds no copies of its own."""
    boundary = f"----spool{uuid.uuid4().hex}"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
        )
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def watched(monkeypatch):
    """Every part stream the app is given, with the process's open descriptors counted as each is made."""
    seen: dict[str, list] = {"streams": [], "fds": []}
    original = SpoolingRequest._get_file_stream

    def spy(self, *args, **kwargs):
        stream = original(self, *args, **kwargs)
        seen["streams"].append(stream)
        seen["fds"].append(open_fds())
        return stream

    monkeypatch.setattr(SpoolingRequest, "_get_file_stream", spy)
    return seen


def test_a_folder_of_parts_is_stored_byte_for_byte_with_one_file_and_little_memory(app, uploads, watched):
    body, content_type = multipart({"model": "digits", "name": "folder"}, uploads)
    total = len(body)
    assert total > 30 * MIB and sum(len(data) > 500 * 1024 for _, data in uploads) == PARTS // 10
    client = app.test_client()
    stream = io.BytesIO(body)
    before = open_fds()
    tracemalloc.start()
    try:
        response = client.post("/api/v1/jobs", input_stream=stream, content_type=content_type, content_length=total)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    after = open_fds()

    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    # (b) one shared file for the whole request, and it is closed once the request is done
    streams = watched["streams"]
    assert len(streams) == PARTS and all(isinstance(part, SpoolWindow) for part in streams)
    assert len({id(part._spool) for part in streams}) == 1
    assert max(watched["fds"]) - before <= 3, (before, max(watched["fds"]))
    assert streams[0]._spool.closed and all(part.closed for part in streams)
    assert after - before <= 4, (before, after)  # the jobs database's pooled connection may be new; no part's file
    # (c) the small parts are not held in memory: the peak is the store's batch and an image, not the body
    assert peak < total / 3, f"peak {peak / MIB:.1f} MiB for a {total / MIB:.1f} MiB body"
    # (a) every input, in order, with its bytes
    runtime = app.extensions["ai_service"]
    with runtime.jobs.engine.connect() as connection:
        rows = connection.execute(
            select(JobInput.item_index, JobInput.path, JobInput.size, JobInput.sha256, JobInput.error_code)
            .where(JobInput.job_id == job_id)
            .order_by(JobInput.item_index)
        ).all()
    assert len(rows) == PARTS
    for (index, path, size, digest, error), (filename, data) in zip(rows, uploads, strict=True):
        assert (path, size, error) == (filename, len(data), None), index
        assert digest == hashlib.sha256(data).hexdigest(), index
        assert runtime.jobs.store.get(digest) == data, index


def test_other_endpoints_keep_werkzeugs_streams(app, uploads, watched):
    client = app.test_client()
    small = uploads[0][1]
    response = client.post("/api/v1/predict", data={"model": "digits", "file": (io.BytesIO(small), "a.png")})
    assert response.status_code == 200, response.get_json()
    assert len(watched["streams"]) == 1 and not isinstance(watched["streams"][0], SpoolWindow)


def test_an_archive_part_is_read_through_the_spool(app, uploads, watched):
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for name, data in uploads[:12]:
            archive.writestr(name, data)
    response = app.test_client().post(
        "/api/v1/jobs", data={"model": "digits", "archive": (io.BytesIO(zipped.getvalue()), "folder.zip")}
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["total"] == 12
    assert isinstance(watched["streams"][0], SpoolWindow) and watched["streams"][0]._spool.closed


def test_the_jobs_path_counts_from_the_script_root():
    def request(path: str, base_url: str = "http://localhost/") -> SpoolingRequest:
        return SpoolingRequest(EnvironBuilder(path=path, base_url=base_url, method="POST").get_environ())

    assert request("/api/v1/jobs").spools_parts()
    assert request("/api/v1/jobs", "http://localhost/mounted/").spools_parts()
    assert request("/api/v1/jobs", "http://localhost/mounted/").script_root == "/mounted"
    assert not request("/api/v1/predict").spools_parts()
    assert not request("/api/v1/jobs/abc").spools_parts()
    assert spool.SPOOLED_PATHS == {"/api/v1/jobs"}


def test_windows_append_in_turn_and_read_back_at_their_own_positions():
    shared = SharedSpool()
    first, data_first = shared.window(), os.urandom(70_000)
    for start in range(0, len(data_first), 8192):
        first.write(data_first[start : start + 8192])
    first.seek(0)
    second, data_second = shared.window(), b"second part"
    assert second.write(memoryview(data_second)) == len(data_second) and second.tell() == len(data_second)
    second.seek(0)
    with pytest.raises(io.UnsupportedOperation):
        first.write(b"late")  # the next part has begun: a finished part cannot grow into it
    assert not first.writable() and second.writable()

    assert first.seek(0, io.SEEK_END) == len(data_first) and first.tell() == len(data_first)
    assert first.seek(0) == 0 and first.read(10) == data_first[:10] and first.tell() == 10
    assert second.read() == data_second and second.read() == b"" and second.read(5) == b""
    assert first.read() == data_first[10:]
    assert first.seek(-5, io.SEEK_END) == len(data_first) - 5 and first.read(100) == data_first[-5:]
    first.seek(3)
    assert first.seek(4, io.SEEK_CUR) == 7
    buffer = bytearray(6)
    assert first.readinto(buffer) == 6 and bytes(buffer) == data_first[7:13]
    with pytest.raises(ValueError):
        first.seek(-1)
    assert first.readable() and first.seekable()

    first.close()
    assert not shared.closed
    second.close()
    assert shared.closed  # the last window closes the shared file
    with pytest.raises(ValueError):
        second.read()


def test_the_request_closes_its_spool_even_when_parts_are_left_open():
    parts = [(f"{index}.png", b"\x89PNG\r\n\x1a\n" + bytes(900_000)) for index in range(3)]
    body, content_type = multipart({"model": "digits"}, parts)
    environ = EnvironBuilder(
        path="/api/v1/jobs", method="POST", input_stream=io.BytesIO(body), content_type=content_type
    ).get_environ()
    environ["CONTENT_LENGTH"] = str(len(body))
    before = open_fds()
    request = SpoolingRequest(environ)
    files = request.files.getlist("file")
    assert [part.stream.read() for part in files] == [data for _, data in parts]
    assert open_fds() - before == 1
    shared = files[0].stream._spool
    request.close()
    assert shared.closed and open_fds() == before
