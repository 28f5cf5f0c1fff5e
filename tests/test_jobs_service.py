"""Bulk jobs through the service layer, on real databases: submit, run chunk by chunk, status, results, outputs.

The executor's threads are off here (jobs_local_workers=0): each test runs the chunks itself through `run_chunk`,
the function both executors call, so what happens when is deterministic. tests/test_jobs_local.py covers the
threads, restarts and take-overs.
"""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import jobs_support
import pandas as pd
import pytest
from conftest import encode
from databases import BACKENDS, fresh_database
from jobs_support import CALLER, digit_items, digit_png, rows_per_item, run_all
from PIL import Image
from sqlalchemy import delete, func, select, update

from ai_service.errors import ServiceError
from ai_service.schemas import PredictOptions
from ai_service.service import jobs
from ai_service.service.history.export import csv_read_options
from ai_service.service.jobs import service as service_module
from ai_service.service.jobs.archive import JobItem, items_from_archive, items_from_files
from ai_service.service.jobs.results import JOB_COLUMNS, JOB_NULLABLE, member_name
from ai_service.service.jobs.run import MAX_ATTEMPTS
from ai_service.service.jobs.store import BATCH_BYTES, DatabaseBlobs
from ai_service.service.predict import predict
from ai_service.service.runtime import Runtime
from ai_service.service.upload import Caller, Upload
from ai_service.storage.blobs import BlobStore
from ai_service.storage.schema import Blob, Job, JobChunk, JobInput, Prediction


def make_runtime(home: Path, **overrides: object) -> Runtime:
    return jobs_support.make_runtime(home, jobs_local_workers=0, **overrides)


@pytest.fixture(params=BACKENDS)
def backend_runtime(request, tmp_path):
    """A runtime whose history and jobs live in a fresh database of each backend."""
    with fresh_database(request.param, tmp_path) as url:
        runtime = make_runtime(tmp_path / "home", database_url=url)
        try:
            yield runtime
        finally:
            runtime.close()


@pytest.fixture
def runtime(tmp_path):
    runtime = make_runtime(tmp_path / "home")
    yield runtime
    runtime.close()


def read_results(runtime: Runtime, job_id: str, fmt: str) -> pd.DataFrame:
    data = b"".join(jobs.results(runtime, job_id, fmt))
    if fmt == "jsonl":
        return pd.DataFrame([json.loads(line) for line in data.splitlines()])
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(data), **csv_read_options(JOB_COLUMNS, JOB_NULLABLE))
    return pd.read_parquet(io.BytesIO(data))


def test_submit_run_status_and_results_on_every_backend(backend_runtime, digits_split):
    runtime = backend_runtime
    items = digit_items(digits_split, 40)
    items.insert(5, JobItem("notes/readme.txt", None, ServiceError("unsupported_format", "Not an image: readme.txt")))
    items.insert(20, JobItem("digits/broken.png", b"\x89PNG\r\n\x1a\nnot really"))
    accepted = jobs.submit(runtime, "digits", items, {"top_k": 2}, CALLER, name="digits.zip")
    assert accepted["status"] == "queued" and accepted["total"] == 42
    job_id = accepted["id"]

    queued = jobs.status(runtime, job_id)
    assert (queued["status"], queued["done"], queued["failed"], queued["pending"]) == ("queued", 0, 0, 42)
    assert queued["model"] == "digits" and queued["version"] and queued["executor"] == "local"
    assert queued["options"]["top_k"] == 2 and queued["name"] == "digits.zip"
    with runtime.jobs.engine.connect() as connection:
        chunks = connection.execute(select(JobChunk.start, JobChunk.stop).where(JobChunk.job_id == job_id)).all()
        stored = connection.scalar(select(func.count()).select_from(Blob))
    assert sorted(chunks) == [(0, 16), (16, 32), (32, 42)]
    assert stored == 41  # inputs live in the database store (the refused text file has no bytes)

    jobs.run_chunk(runtime, job_id, 0, 16, "test:1/0")
    running = jobs.status(runtime, job_id)
    assert running["status"] == "running" and running["done"] + running["failed"] == 16
    assert running["pending"] == 26 and running["throughput_per_s"] > 0 and running["eta_s"] is not None
    run_all(runtime, job_id)

    done = jobs.status(runtime, job_id)
    assert (done["status"], done["done"], done["failed"], done["pending"]) == ("succeeded", 40, 2, 0)
    assert done["finished_at"] >= done["started_at"] >= done["created_at"] and done["eta_s"] == 0.0
    assert rows_per_item(runtime, job_id) == {index: 1 for index in range(42)}
    assert jobs.listing(runtime)[0]["id"] == job_id
    assert jobs.listing(runtime, status="running") == []

    results = read_results(runtime, job_id, "jsonl")
    assert list(results["item_index"]) == list(range(42))
    assert list(results["path"]) == [item.path for item in items]
    assert set(results["source"]) == {"job"} and set(results["job_id"]) == {job_id}
    by_path = results.set_index("path")
    assert by_path.loc["notes/readme.txt", "error_code"] == "unsupported_format"
    assert by_path.loc["digits/broken.png", "status"] == "error"
    assert by_path.loc["digits/broken.png", "error_code"] in ("corrupt_image", "invalid_image")
    assert (by_path.drop(["notes/readme.txt", "digits/broken.png"])["status"] == "ok").all()
    assert json.loads(by_path.loc["digits/0000.png", "result"])["predictions"][0]["label"] == str(
        digits_split.test_labels[0]
    )


def test_results_in_every_format_read_back_in_input_order(runtime, digits_split):
    items = digit_items(digits_split, 20, prefix="batch 1/sub")
    items.append(JobItem("zz/not-an-image.bin", b"\x00\x01\x02 nothing"))
    job_id = jobs.submit(runtime, "digits", items, {}, CALLER)["id"]
    run_all(runtime, job_id)
    frames = {fmt: read_results(runtime, job_id, fmt) for fmt in ("jsonl", "csv", "parquet")}
    for fmt, frame in frames.items():
        assert list(frame.columns) == list(JOB_COLUMNS), fmt
        assert list(frame["path"]) == [item.path for item in items], fmt
        assert list(frame["item_index"]) == list(range(21)), fmt
        assert list(frame["status"]) == ["ok"] * 20 + ["error"], fmt
        labels = [None if pd.isna(label) else label for label in frame["top1_label"]]
        assert all(labels[:20]) and labels[20] is None, fmt
        assert frame["error_code"].iloc[20] in ("unsupported_format", "invalid_image"), fmt
    pd.testing.assert_frame_equal(frames["csv"], frames["parquet"], check_dtype=False)  # CSV reads back typed
    assert frames["parquet"]["top1_score"].tolist() == pytest.approx(
        frames["jsonl"]["top1_score"].tolist(), nan_ok=True
    )
    assert str(frames["parquet"]["created_at"].dtype).startswith("datetime64")


def test_a_chunk_run_twice_writes_each_row_once(backend_runtime, digits_split):
    runtime = backend_runtime
    job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 32), {}, CALLER)["id"]
    jobs.run_chunk(runtime, job_id, 0, 16, "worker-a:1/0")
    jobs.run_chunk(runtime, job_id, 0, 16, "worker-b:2/0")  # redelivered after it finished
    assert rows_per_item(runtime, job_id) == {index: 1 for index in range(16)}
    # A worker killed after 5 items of the second chunk: the redelivery writes only the other 11.
    jobs.run_chunk(runtime, job_id, 16, 21, "worker-a:1/0")
    with runtime.jobs.engine.connect() as connection:
        before = dict(
            connection.execute(select(Prediction.item_index, Prediction.id).where(Prediction.job_id == job_id)).all()
        )
    jobs.run_chunk(runtime, job_id, 16, 32, "worker-b:2/0")
    with runtime.jobs.engine.connect() as connection:
        after = dict(
            connection.execute(select(Prediction.item_index, Prediction.id).where(Prediction.job_id == job_id)).all()
        )
        attempts = dict(
            connection.execute(select(JobChunk.start, JobChunk.attempts).where(JobChunk.job_id == job_id)).all()
        )
    assert {index: after[index] for index in before} == before  # the rows written first were kept, not rewritten
    assert rows_per_item(runtime, job_id) == {index: 1 for index in range(32)}
    assert attempts == {0: 2, 16: 2}
    status = jobs.status(runtime, job_id)
    assert (status["status"], status["done"], status["failed"], status["pending"]) == ("succeeded", 32, 0, 0)

    # Two workers that both passed the "no row yet" check: the database keeps one row per item.
    from ai_service.service.jobs.run import load_job, missing_items, run_batch

    other = jobs.submit(runtime, "digits", digit_items(digits_split, 4), {}, CALLER)["id"]
    todo = missing_items(runtime.jobs, other, 0, 4)
    job = load_job(runtime.jobs, other)
    caller = Caller("job", other, job.client, other)
    options = PredictOptions().model_options(3)
    for _ in range(2):
        run_batch(runtime, runtime.jobs, "digits", options, caller, todo, (other, 0))
    assert rows_per_item(runtime, other) == {index: 1 for index in range(4)}


def test_cancel_mid_job_keeps_what_is_done_and_runs_nothing_more(runtime, digits_split):
    job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 64), {}, CALLER)["id"]
    jobs.run_chunk(runtime, job_id, 0, 16, "test:1/0")
    checks = 0

    def cancel_during_second_batch() -> bool:
        """Asked before each batch of the chunk: the job is cancelled after its first batch."""
        nonlocal checks
        checks += 1
        if checks == 2:
            jobs.cancel(runtime, job_id)
        return False

    jobs.run_chunk(runtime, job_id, 16, 32, "test:1/0", interrupted=cancel_during_second_batch)
    batch = len(rows_per_item(runtime, job_id)) - 16
    assert 0 < batch < 16  # the chunk stopped after the batch that was running when the job was cancelled
    run_all(runtime, job_id)  # chunks delivered after the cancel do nothing
    status = jobs.status(runtime, job_id)
    assert status["status"] == "cancelled" and status["finished_at"] is not None
    assert status["done"] == 16 + batch and status["pending"] == 64 - 16 - batch and status["eta_s"] is None
    assert sorted(rows_per_item(runtime, job_id)) == list(range(16 + batch))
    results = read_results(runtime, job_id, "csv")
    assert list(results["status"]) == ["ok"] * (16 + batch) + ["cancelled"] * (64 - 16 - batch)
    assert results["id"].isna().sum() == 64 - 16 - batch

    with pytest.raises(ServiceError) as again:
        jobs.cancel(runtime, job_id)
    assert again.value.code == "invalid_state" and again.value.status == 409
    with pytest.raises(ServiceError) as unknown:
        jobs.cancel(runtime, "f" * 32)
    assert unknown.value.code == "not_found"


def test_a_job_reaches_the_same_predictions_as_predict(runtime, digits_split):
    count = 150
    pngs = [digit_png(digits_split.test_images[index], 48) for index in range(count)]
    job_id = jobs.submit(
        runtime, "digits", [JobItem(f"{index}.png", data) for index, data in enumerate(pngs)], {"top_k": 1}, CALLER
    )["id"]
    run_all(runtime, job_id)
    results = read_results(runtime, job_id, "parquet")
    direct = []
    for first in range(0, count, 16):
        outcome = predict(
            runtime,
            "digits",
            [Upload(data, "x.png") for data in pngs[first : first + 16]],
            PredictOptions(top_k=1).model_options(1),
        )
        direct += [result["predictions"][0] for result in outcome.results]
    assert list(results["top1_label"]) == [entry["label"] for entry in direct]
    assert list(results["top1_score"]) == pytest.approx([entry["score"] for entry in direct], abs=1e-6)
    truth = [str(label) for label in digits_split.test_labels[:count]]
    job_accuracy = sum(a == b for a, b in zip(results["top1_label"], truth)) / count
    direct_accuracy = sum(entry["label"] == b for entry, b in zip(direct, truth)) / count
    assert job_accuracy == direct_accuracy >= 0.9


def test_outputs_zip_names_outputs_after_their_inputs(runtime):
    paths = ["photos/cat.jpg", "photos/dog.png", "top.png", "../escape.png", "photos/cat.png"]
    sizes = [(20, 12), (16, 16), (8, 10), (6, 6), (10, 10)]
    items = []
    for path, size in zip(paths, sizes):
        image = Image.new("RGB", size, (200, 40, 90))
        items.append(JobItem(path, encode(image, "JPEG" if path.endswith(".jpg") else "PNG")))
    items.append(JobItem("photos/notes.txt", None, ServiceError("unsupported_format", "Not an image.")))
    job_id = jobs.submit(runtime, "upscale-2x", items, {}, CALLER)["id"]
    run_all(runtime, job_id)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(jobs.outputs_zip(runtime, job_id))))
    names = archive.namelist()
    assert names == ["photos/cat.png", "photos/dog.png", "top.png", "escape.png", "photos/cat-4.png"]
    for name, (width, height) in zip(names, sizes):
        with Image.open(io.BytesIO(archive.read(name))) as output:
            assert output.format == "PNG" and output.size == (width * 2, height * 2)

    webp = jobs.submit(runtime, "upscale-2x", items[:2], {"output_format": "webp", "quality": 80}, CALLER)["id"]
    run_all(runtime, webp)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(jobs.outputs_zip(runtime, webp))))
    assert archive.namelist() == ["photos/cat.webp", "photos/dog.webp"]
    with Image.open(io.BytesIO(archive.read("photos/cat.webp"))) as output:
        assert output.format == "WEBP" and output.size == (40, 24)


def test_outputs_zip_of_a_classifier_is_an_empty_zip(runtime, digits_split):
    job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 3), {}, CALLER)["id"]
    run_all(runtime, job_id)
    assert zipfile.ZipFile(io.BytesIO(b"".join(jobs.outputs_zip(runtime, job_id)))).namelist() == []


def test_member_names_stay_inside_the_zip():
    taken: set[str] = set()
    assert member_name("/etc/passwd", 0, "png", taken) == "etc/passwd.png"
    assert member_name("a/../../b.jpg", 1, "png", taken) == "a/b.png"
    assert member_name("", 7, "png", taken) == "000007.png"
    assert member_name("etc/passwd.gif", 9, "png", taken) == "etc/passwd-9.png"


def test_submit_refuses_before_storing_anything(runtime, digits_split):
    items = digit_items(digits_split, 2)
    for model, options, code in (
        ("no-such-model", {}, "unknown_model"),
        ("digits", {"top_k": 0}, "validation_error"),
        ("digits", {"colour": "red"}, "validation_error"),
    ):
        with pytest.raises(ServiceError) as refused:
            jobs.submit(runtime, model, items, options, CALLER)
        assert refused.value.code == code
    with pytest.raises(ServiceError) as empty:
        jobs.submit(runtime, "digits", [], {}, CALLER)
    assert empty.value.code == "missing_file"
    small = make_runtime(runtime.settings.home.parent / "small", jobs_max_items=3)
    try:
        with pytest.raises(ServiceError) as many:
            jobs.submit(small, "digits", digit_items(digits_split, 4), {}, CALLER)
        assert many.value.code == "too_many_files" and many.value.status == 413
    finally:
        small.close()
    with runtime.jobs.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Job)) == 0
        assert connection.scalar(select(func.count()).select_from(Blob)) == 0
    with pytest.raises(ServiceError) as unknown:
        jobs.status(runtime, "0" * 32)
    assert unknown.value.code == "not_found" and unknown.value.status == 404


def test_a_model_removed_after_submit_fails_the_job(runtime, digits_split):
    job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 4), {}, CALLER)["id"]
    with runtime.jobs.engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(model="gone-model"))
    jobs.run_chunk(runtime, job_id, 0, 4, "test:1/0")
    status = jobs.status(runtime, job_id)
    assert status["status"] == "failed" and status["error"]["code"] == "unknown_model"
    assert status["done"] == 0


def test_a_chunk_that_fails_as_a_whole_is_retried_then_fails_the_job(runtime, digits_split):
    job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 4), {}, CALLER)["id"]
    with runtime.jobs.engine.begin() as connection:
        connection.execute(delete(Blob))  # the store lost the inputs: no retry can help, but the chunk is retried
    with pytest.raises(ServiceError) as first:
        jobs.run_chunk(runtime, job_id, 0, 4, "test:1/0")
    assert first.value.code == "unavailable"
    assert jobs.status(runtime, job_id)["status"] == "running"
    with runtime.jobs.engine.begin() as connection:
        connection.execute(update(JobChunk).where(JobChunk.job_id == job_id).values(attempts=MAX_ATTEMPTS - 1))
    jobs.run_chunk(runtime, job_id, 0, 4, "test:1/0")  # the last attempt: the job fails instead of raising
    status = jobs.status(runtime, job_id)
    assert status["status"] == "failed" and status["error"]["code"] == "unavailable"


def test_a_job_whose_every_input_failed_has_failed(runtime):
    items = [JobItem(f"{index}.png", b"not an image") for index in range(3)]
    job_id = jobs.submit(runtime, "digits", items, {}, CALLER)["id"]
    run_all(runtime, job_id)
    status = jobs.status(runtime, job_id)
    assert (status["status"], status["failed"], status["done"]) == ("failed", 3, 0)


def test_a_folder_job_store_keeps_inputs_and_outputs_as_files(tmp_path, digits_split):
    runtime = make_runtime(tmp_path / "home", jobs_store="jobstore")
    try:
        assert isinstance(runtime.jobs.store, BlobStore)
        image = Image.new("RGB", (8, 8), (10, 200, 30))
        job_id = jobs.submit(runtime, "edges", [JobItem("a/b.png", encode(image))], {}, CALLER)["id"]
        run_all(runtime, job_id)
        files = list((tmp_path / "home" / "jobstore").glob("??/??/*"))
        assert len(files) == 2  # the input and the edge map
        assert zipfile.ZipFile(io.BytesIO(b"".join(jobs.outputs_zip(runtime, job_id)))).namelist() == ["a/b.png"]
    finally:
        runtime.close()


def test_database_blobs_store_once(backend_runtime):
    store = DatabaseBlobs(backend_runtime.jobs.engine)
    data = bytes(range(256)) * 1000
    digest = store.put(data)
    assert store.put(data) == digest and store.get(digest) == data and store.get("0" * 64) is None
    store.put_many({digest: data})
    with backend_runtime.jobs.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Blob)) == 1


def test_jobs_off_answers_jobs_disabled(tmp_path):
    runtime = make_runtime(tmp_path / "home", jobs=False)
    try:
        assert runtime.jobs is None
        with pytest.raises(ServiceError) as off:
            jobs.listing(runtime)
        assert off.value.code == "jobs_disabled" and off.value.status == 503
    finally:
        runtime.close()


def test_job_inputs_are_kept_with_their_paths(runtime, digits_split):
    items = digit_items(digits_split, 2)
    items.append(JobItem("x/empty.png", b""))
    job_id = jobs.submit(runtime, "digits", items, {}, CALLER)["id"]
    with runtime.jobs.engine.connect() as connection:
        kept = connection.execute(
            select(JobInput.path, JobInput.size, JobInput.error_code).where(JobInput.job_id == job_id)
        ).all()
    assert kept == [
        ("digits/0000.png", len(items[0].data), None),
        ("digits/0001.png", len(items[1].data), None),
        ("x/empty.png", 0, "empty_file"),
    ]


def test_an_input_beyond_mariadb_packets_is_refused_before_anything_is_stored(tmp_path, digits_split):
    with fresh_database("mariadb", tmp_path) as url:
        runtime = make_runtime(tmp_path / "home", database_url=url)
        try:
            items = [*digit_items(digits_split, 2), JobItem("huge.bmp", b"\x00" * 9_000_000)]  # 18 MB escaped
            with pytest.raises(ServiceError) as refused:
                jobs.submit(runtime, "digits", items, {}, CALLER)
            assert refused.value.code == "payload_too_large" and "max_allowed_packet" in refused.value.message
            with runtime.jobs.engine.connect() as connection:
                assert connection.scalar(select(func.count()).select_from(Blob)) == 0
                assert connection.scalar(select(func.count()).select_from(Job)) == 0
        finally:
            runtime.close()


def incompressible_zip(path: Path, members: int, size: int) -> int:
    """A stored zip of `members` PNG-signed random members (they sniff as images, nothing compresses them)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(members):
            archive.writestr(f"photos/{index:04d}.png", b"\x89PNG\r\n\x1a\n" + os.urandom(size))
    return members * size


def test_submitting_a_large_archive_holds_one_store_batch_not_the_archive(runtime, tmp_path):
    """200 x 256 KiB (50 MiB) of incompressible images: peak Python memory while reading and storing them stays
    near one store batch (BATCH_BYTES, 8 MiB) plus one member, not the archive's size."""
    path = tmp_path / "photos.zip"
    total = incompressible_zip(path, 200, 256 * 1024)
    with path.open("rb") as upload:
        tracemalloc.start()
        try:
            items = items_from_archive(upload, "photos.zip", runtime.settings.jobs)
            accepted = jobs.submit(runtime, "digits", items, {}, CALLER)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert accepted["total"] == 200
    assert peak < BATCH_BYTES + 8 * 1024 * 1024 < total / 3, f"peak {peak / 2**20:.1f} MiB for {total / 2**20:.0f} MiB"
    with runtime.jobs.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Blob)) == 200
        assert (
            connection.scalar(select(func.sum(JobInput.size)).where(JobInput.job_id == accepted["id"]))
            == total + 200 * 8
        )


def test_file_parts_are_read_one_at_a_time(runtime, tmp_path):
    streams = []
    for index in range(100):
        part = (tmp_path / f"{index}.png").open("w+b")
        part.write(b"\x89PNG\r\n\x1a\n" + os.urandom(256 * 1024))
        streams.append((f"folder/{index}.png", part))
    tracemalloc.start()
    try:
        items = items_from_files(streams, runtime.settings.jobs)
        accepted = jobs.submit(runtime, "digits", items, {}, CALLER)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        for _, part in streams:
            part.close()
    assert accepted["total"] == 100 and peak < BATCH_BYTES + 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_an_item_refused_late_leaves_no_job_and_dispatches_nothing(runtime, digits_split, monkeypatch):
    """Items made one at a time: a refusal after some batches were stored writes no job and runs nothing."""
    monkeypatch.setattr(service_module, "BATCH_BYTES", 1)  # every item its own batch: stored before the refusal
    dispatched = []
    monkeypatch.setattr(runtime.jobs.executor, "dispatch", lambda job_id, chunks: dispatched.append(job_id))

    def items():
        yield from digit_items(digits_split, 3)
        raise ServiceError("invalid_archive", "The archive is corrupt or truncated.")

    with pytest.raises(ServiceError) as refused:
        jobs.submit(runtime, "digits", items(), {}, CALLER)
    assert refused.value.code == "invalid_archive" and not dispatched
    with runtime.jobs.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Job)) == 0
        assert connection.scalar(select(func.count()).select_from(JobInput)) == 0
        assert connection.scalar(select(func.count()).select_from(JobChunk)) == 0
        # the bytes stored before the refusal are named by nothing: retention removes them once they are old
        assert connection.scalar(select(func.count()).select_from(Blob)) == 3
    small = make_runtime(runtime.settings.home.parent / "small", jobs_max_items=3)
    try:
        with pytest.raises(ServiceError) as many:  # an iterator has no length: counted as it goes
            jobs.submit(small, "digits", iter(digit_items(digits_split, 4)), {}, CALLER)
        assert many.value.code == "too_many_files"
        with small.jobs.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Job)) == 0
    finally:
        small.close()


def test_a_rerun_job_is_answered_from_the_result_cache_unless_it_says_cache_off(runtime, digits_split):
    def cached_flags(options: dict) -> list:
        job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 6), options, CALLER)["id"]
        run_all(runtime, job_id)
        frame = read_results(runtime, job_id, "jsonl")
        return [json.loads(result).get("cached", False) for result in frame["result"]]

    assert cached_flags({}) == [False] * 6  # the first run computes every image
    assert cached_flags({}) == [True] * 6  # a re-run costs no forward
    assert cached_flags({"cache": "off"}) == [False] * 6
