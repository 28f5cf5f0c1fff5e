"""/api/v1/jobs through the Flask test client: submit (archive, file parts, JSON), 202 + Location, follow to the end
with the local executor, results in input order with their paths (read back with pandas), outputs.zip, cancel,
validation and hostile archives refused before anything is stored, the jobs' own body limit, and API keys."""

from __future__ import annotations

import base64
import io
import tarfile
import time
import zipfile

import pandas as pd
import pytest
from conftest import encode
from jobs_support import make_app
from PIL import Image

from ai_service.http.deadline import BodyDeadlineMiddleware

FINISHED = {"succeeded", "failed", "cancelled"}
KEY = "jobs-key"


@pytest.fixture
def app(home):
    app = make_app(home)
    yield app
    app.extensions["ai_service"].close()


@pytest.fixture(scope="module")
def digits(digits_split) -> list[tuple[bytes, int]]:
    """Twenty held-out digits as 32×32 PNGs, with their labels."""
    from ai_service.models.builtin.digits_training import render_digit

    return [
        (encode(render_digit(digits_split.test_images[i], 32)), int(digits_split.test_labels[i])) for i in range(20)
    ]


def wait(client, job_id: str, headers: dict | None = None, timeout: float = 60.0) -> dict:
    """Poll the job until it is finished (the local executor runs it in this process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()
        if body["status"] in FINISHED:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {body}")


def results(client, job_id: str, fmt: str, headers: dict | None = None) -> pd.DataFrame:
    response = client.get(f"/api/v1/jobs/{job_id}/results?format={fmt}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Disposition"] == f'attachment; filename="job-{job_id}.{fmt}"'
    data = io.BytesIO(response.get_data())
    if fmt == "jsonl":
        return pd.read_json(data, lines=True, dtype=False)  # labels such as "7" stay text
    if fmt == "csv":
        return pd.read_csv(data, dtype={"path": "string", "top1_label": "string"})
    return pd.read_parquet(data)


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def nothing_stored(client) -> bool:
    return client.get("/api/v1/jobs").get_json()["items"] == []


def test_file_parts_run_to_the_end_with_results_in_input_order(client, digits):
    names = [f"digits/{label}/{index:02d}.png" for index, (_, label) in enumerate(digits)]
    files = [(io.BytesIO(data), name) for (data, _), name in zip(digits, names, strict=True)]
    files.append((io.BytesIO(b"just some notes"), "digits/notes.txt"))
    response = client.post("/api/v1/jobs", data={"model": "digits", "top_k": "2", "file": files, "name": "nightly"})
    assert response.status_code == 202, response.get_data(as_text=True)
    created = response.get_json()
    assert created["status"] == "queued" and created["total"] == len(digits) + 1
    assert response.headers["Location"] == f"/api/v1/jobs/{created['id']}"

    job = wait(client, created["id"])
    assert job["status"] == "succeeded" and job["name"] == "nightly" and job["model"] == "digits"
    assert (job["done"], job["failed"], job["pending"], job["total"]) == (len(digits), 1, 0, len(digits) + 1)
    assert job["throughput_per_s"] > 0 and job["eta_s"] == 0 and job["finished_at"]
    for fmt in ("jsonl", "csv", "parquet"):
        rows = results(client, created["id"], fmt)
        assert list(rows["path"]) == [*names, "digits/notes.txt"], fmt
        assert list(rows["item_index"]) == list(range(len(digits) + 1)), fmt
        assert list(rows["status"]) == ["ok"] * len(digits) + ["error"], fmt
        labels = [str(label) for _, label in digits]
        accuracy = sum(str(found) == label for found, label in zip(rows["top1_label"], labels, strict=False)) / len(
            labels
        )
        assert accuracy >= 0.9, (fmt, accuracy)
        assert rows["error_code"].iloc[-1] and (rows["job_id"] == created["id"]).all()
    listed = client.get("/api/v1/jobs").get_json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    history = client.get(f"/api/v1/history?job_id={created['id']}&limit=500").get_json()["items"]
    assert len(history) == len(digits) + 1 and {row["source"] for row in history} == {"job"}


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_archives_are_unpacked_and_their_paths_kept(client, digits, kind):
    members = {f"scans/{index}.png": data for index, (data, _) in enumerate(digits[:5])}
    archive = zip_of(members) if kind == "zip" else tar_of(members, "w:gz" if kind == "tar.gz" else "w")
    response = client.post("/api/v1/jobs", data={"archive": (io.BytesIO(archive), f"scans.{kind}")})
    assert response.status_code == 202, response.get_data(as_text=True)
    created = response.get_json()
    job = wait(client, created["id"])
    assert job["status"] == "succeeded" and job["total"] == 5 and job["done"] == 5 and job["name"] == f"scans.{kind}"
    rows = results(client, created["id"], "jsonl")
    assert list(rows["path"]) == list(members)
    assert list(rows["top1_label"].astype(str)) == [str(label) for _, label in digits[:5]]


def test_json_images_with_names_and_a_bad_item(client, digits):
    images = [base64.b64encode(data).decode() for data, _ in digits[:3]] + ["%%% not base64 %%%"]
    names = ["a.png", "b.png", "c.png", "d.png"]
    response = client.post("/api/v1/jobs", json={"images": images, "filenames": names, "model": "digits"})
    assert response.status_code == 202, response.get_data(as_text=True)
    job = wait(client, response.get_json()["id"])
    assert (job["done"], job["failed"], job["name"]) == (3, 1, "json")
    rows = results(client, job["id"], "csv")
    assert list(rows["path"]) == names and rows["error_code"].iloc[3] == "invalid_base64"


def test_image_outputs_come_back_as_a_zip_named_after_the_inputs(client):
    pixels = Image.new("RGBA", (12, 10), (200, 20, 20, 255))
    files = [(io.BytesIO(encode(pixels)), "in/red.png"), (io.BytesIO(encode(pixels)), "in/sub/also.png")]
    created = client.post("/api/v1/jobs", data={"model": "negative", "output_format": "webp", "file": files}).get_json()
    assert wait(client, created["id"])["status"] == "succeeded"
    response = client.get(f"/api/v1/jobs/{created['id']}/outputs.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert "outputs.zip" in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.get_data())) as archive:
        names = archive.namelist()
        assert names == ["in/red.webp", "in/sub/also.webp"]
        image = Image.open(io.BytesIO(archive.read(names[0])))
        assert image.format == "WEBP" and image.convert("RGBA").getpixel((3, 3))[:3] == pytest.approx(
            (55, 235, 235), abs=3
        )


@pytest.mark.parametrize(
    ("data", "code", "status"),
    [
        ({"model": "no-such-model", "file": [(io.BytesIO(b"x"), "a.png")]}, "unknown_model", 404),
        ({"model": "digits"}, "missing_file", 400),
        ({"top_k": "0", "file": [(io.BytesIO(b"x"), "a.png")]}, "validation_error", 422),
        ({"fit": "squash", "file": [(io.BytesIO(b"x"), "a.png")]}, "validation_error", 422),
        ({"file": [(io.BytesIO(b"x"), "a.png")], "archive": (io.BytesIO(b"x"), "a.zip")}, "validation_error", 422),
        ({"archive": (io.BytesIO(b"this is no archive"), "a.zip")}, "invalid_archive", 400),
    ],
)
def test_bad_submissions_are_refused_before_anything_is_stored(client, data, code, status):
    response = client.post("/api/v1/jobs", data=data, content_type="multipart/form-data")
    body = response.get_json()
    assert (response.status_code, body["error"]["code"]) == (status, code), body
    assert nothing_stored(client)


def test_bad_bodies_are_refused(client):
    plain = client.post("/api/v1/jobs", data=b"hello", content_type="text/plain")
    assert plain.status_code == 415 and plain.get_json()["error"]["code"] == "unsupported_media_type"
    broken = client.post("/api/v1/jobs", data=b"{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.get_json()["error"]["code"] == "invalid_json"
    empty = client.post("/api/v1/jobs", json={"images": []})
    assert empty.status_code == 422 and empty.get_json()["error"]["details"][0]["loc"] == ["images"]
    unpaired = client.post("/api/v1/jobs", json={"images": ["AAAA"], "filenames": ["a.png", "b.png"]})
    assert unpaired.status_code == 422
    assert nothing_stored(client)


def tar_with_link() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("photos/passwd.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "archive", "status", "code", "named"),
    [
        ("evil.zip", lambda png: zip_of({"../../etc/evil.png": png}), 400, "unsafe_archive", "evil.png"),
        ("absolute.zip", lambda png: zip_of({"/etc/x.png": png}), 400, "unsafe_archive", "/etc/x.png"),
        (
            "nested.zip",
            lambda png: zip_of({"inner.zip": zip_of({"a.png": png}), "a.png": png}),
            400,
            "unsafe_archive",
            "inner.zip",
        ),
        ("link.tar", lambda png: tar_with_link(), 400, "unsafe_archive", "passwd.png"),
        ("bomb.zip", lambda png: zip_of({"zeros.png": bytes(50 * 1024 * 1024)}), 413, "archive_too_large", "zeros.png"),
    ],
)
def test_hostile_archives_get_a_clear_4xx_before_anything_is_stored(client, digits, name, archive, status, code, named):
    response = client.post("/api/v1/jobs", data={"archive": (io.BytesIO(archive(digits[0][0])), name)})
    body = response.get_json()
    assert (response.status_code, body["error"]["code"]) == (status, code), body
    assert named in body["error"]["message"], body
    assert nothing_stored(client)


def test_the_jobs_body_limit_replaces_the_global_one(home, digits):
    big = encode(Image.effect_noise((256, 256), 64).convert("L"))  # noise: PNG cannot compress it much
    assert len(big) > 40 * 1024
    app = make_app(home, max_upload_mb=0.03, jobs_max_upload_mb=0.2)
    try:
        client = app.test_client()
        refused = client.post("/api/v1/predict", data={"file": (io.BytesIO(big), "big.png")})
        assert refused.status_code == 413
        accepted = client.post("/api/v1/jobs", data={"file": [(io.BytesIO(big), f"{i}.png") for i in range(2)]})
        assert accepted.status_code == 202, accepted.get_json()
        too_big = client.post("/api/v1/jobs", data={"file": [(io.BytesIO(big), f"{i}.png") for i in range(8)]})
        body = too_big.get_json()
        assert too_big.status_code == 413 and body["error"]["code"] == "payload_too_large"
        assert "AI_SERVICE_JOBS_MAX_UPLOAD_MB" in body["error"]["message"]
    finally:
        app.extensions["ai_service"].close()


def test_more_images_than_max_items_is_a_413(home, digits):
    app = make_app(home, jobs_max_items=3)
    try:
        client = app.test_client()
        files = [(io.BytesIO(data), f"{index}.png") for index, (data, _) in enumerate(digits[:4])]
        response = client.post("/api/v1/jobs", data={"file": files})
        assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_many_files"
        response = client.post("/api/v1/jobs", json={"images": ["AAAA"] * 4})
        assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_many_files"
        archive = zip_of({f"{index}.png": data for index, (data, _) in enumerate(digits[:4])})
        response = client.post("/api/v1/jobs", data={"archive": (io.BytesIO(archive), "four.zip")})
        body = response.get_json()
        assert response.status_code == 413 and "JOBS_MAX_ITEMS" in body["error"]["message"].upper(), body
        assert nothing_stored(client)
    finally:
        app.extensions["ai_service"].close()


def test_cancel_a_queued_job_and_its_results_say_so(home, digits):
    app = make_app(home, jobs_local_workers=0)  # nobody runs the chunks: the job stays queued
    try:
        client = app.test_client()
        files = [(io.BytesIO(data), f"{index}.png") for index, (data, _) in enumerate(digits[:4])]
        job_id = client.post("/api/v1/jobs", data={"file": files}).get_json()["id"]
        assert client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] == "queued"
        cancelled = client.delete(f"/api/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
        again = client.delete(f"/api/v1/jobs/{job_id}")
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "invalid_state"
        rows = results(client, job_id, "jsonl")
        assert list(rows["path"]) == [f"{index}.png" for index in range(4)] and set(rows["status"]) == {"cancelled"}
        assert [job["status"] for job in client.get("/api/v1/jobs?status=cancelled").get_json()["items"]] == [
            "cancelled"
        ]
        assert client.get("/api/v1/jobs?status=running").get_json()["items"] == []
    finally:
        app.extensions["ai_service"].close()


def test_unknown_jobs_and_bad_parameters(client):
    missing = "0" * 32
    for method, path in (
        ("get", f"/api/v1/jobs/{missing}"),
        ("delete", f"/api/v1/jobs/{missing}"),
        ("get", f"/api/v1/jobs/{missing}/results"),
        ("get", f"/api/v1/jobs/{missing}/outputs.zip"),
    ):
        response = getattr(client, method)(path)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found", path
    bad = client.get(f"/api/v1/jobs/{missing}/results?format=xlsx")
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_parameter"
    assert client.get("/api/v1/jobs?status=paused").status_code == 422
    assert client.get("/api/v1/jobs?limit=0").status_code == 422


def test_with_api_keys_jobs_need_a_key_to_submit_and_to_read(home, digits):
    app = make_app(home, api_keys=[KEY])
    try:
        client = app.test_client()
        files = [(io.BytesIO(digits[0][0]), "a.png")]
        refused = client.post("/api/v1/jobs", data={"file": files})
        assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "missing_api_key"
        keyed = {"X-API-Key": KEY}
        assert client.get("/api/v1/jobs", headers=keyed).get_json()["items"] == []
        created = client.post("/api/v1/jobs", data={"file": [(io.BytesIO(digits[0][0]), "a.png")]}, headers=keyed)
        assert created.status_code == 202
        job_id = created.get_json()["id"]
        wait(client, job_id, keyed)
        for path in (
            "/api/v1/jobs",
            f"/api/v1/jobs/{job_id}",
            f"/api/v1/jobs/{job_id}/results",
            f"/api/v1/jobs/{job_id}/outputs.zip",
        ):
            response = client.get(path)
            assert response.status_code == 401 and response.get_json()["error"]["code"] == "missing_api_key", path
            assert client.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 401
        assert client.get("/api/v1/jobs", headers={"X-API-Key": "wrong"}).status_code == 401
    finally:
        app.extensions["ai_service"].close()


def test_jobs_off_answers_503(home):
    app = make_app(home, jobs="off")
    try:
        client = app.test_client()
        response = client.post("/api/v1/jobs", data={"file": [(io.BytesIO(b"x"), "a.png")]})
        assert response.status_code == 503 and response.get_json()["error"]["code"] == "jobs_disabled"
        assert client.get("/api/v1/jobs").status_code == 503
    finally:
        app.extensions["ai_service"].close()


def test_under_gunicorn_a_job_upload_gets_time_for_its_size(app):
    """The body deadline (408 for tricklers) grows with a job upload's declared size at 1 MiB/s, only on /jobs."""
    middleware = app.wsgi_app
    while not isinstance(middleware, BodyDeadlineMiddleware):
        middleware = middleware.app
    mib = 1024 * 1024
    seconds = app.extensions["ai_service"].settings.limits.body_timeout
    assert middleware.deadline("/api/v1/jobs", 600 * mib) == pytest.approx(seconds + 600)
    assert middleware.deadline("/api/v1/jobs", None) == seconds  # chunked: no size declared, no extra time
    assert middleware.deadline("/api/v1/predict", 600 * mib) == seconds


def test_a_malformed_job_id_is_a_404_before_the_database(client, digits):
    job_id = client.post("/api/v1/jobs", data={"file": [(io.BytesIO(digits[0][0]), "a.png")]}).get_json()["id"]
    for path in (f"/api/v1/jobs/{job_id}x", f'/api/v1/jobs/{job_id}"x/results', f"/api/v1/jobs/{job_id.upper()}"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found", path
