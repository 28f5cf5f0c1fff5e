"""AI_SERVICE_HISTORY_DAYS for jobs: finished jobs older than the cutoff go with their inputs, chunks, result rows
and the stored bytes nothing names any more; running jobs, and bytes a newer job or a submit in progress uses, stay.
On real databases (SQLite, MariaDB, PostgreSQL) and with a folder store, with the history on and off."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jobs_support
import pytest
from conftest import encode
from databases import BACKENDS, fresh_database
from jobs_support import CALLER, run_all
from PIL import Image
from sqlalchemy import func, select, update

from ai_service.service import jobs
from ai_service.service.jobs import retention
from ai_service.service.jobs.archive import JobItem
from ai_service.service.jobs.store import FolderBlobs
from ai_service.service.runtime import Runtime
from ai_service.storage.schema import Blob, Job, JobChunk, JobInput, Prediction

DAYS = 30


def make_runtime(home: Path, *, run_jobs: bool = False, **overrides: object) -> Runtime:
    overrides = {"jobs_local_workers": 0, "jobs_chunk_size": 2, "history_days": DAYS, **overrides}
    return jobs_support.make_runtime(home, run_jobs=run_jobs, **overrides)


@pytest.fixture(params=BACKENDS)
def runtime(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        runtime = make_runtime(tmp_path / "home", database_url=url)
        try:
            yield runtime
        finally:
            runtime.close()


def png(seed: int) -> bytes:
    """A noisy image of its own: its edge map differs from every other one's too."""
    return encode(Image.frombytes("RGB", (8, 8), random.Random(seed).randbytes(8 * 8 * 3)))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def submit(runtime: Runtime, *images: bytes) -> str:
    items = [JobItem(f"in/{index}.png", data) for index, data in enumerate(images)]
    return jobs.submit(runtime, "edges", items, {}, CALLER)["id"]


def age_job(runtime: Runtime, job_id: str, days: float, **values: object) -> None:
    """The job (and its result rows) as if it had been submitted, and finished unless told, `days` ago."""
    moment = datetime.now(UTC) - timedelta(days=days)
    with runtime.jobs.engine.begin() as connection:
        current = connection.scalar(select(Job.status).where(Job.id == job_id))
        finished = moment if current in ("succeeded", "failed", "cancelled") else None
        connection.execute(
            update(Job).where(Job.id == job_id).values(created_at=moment, finished_at=finished, **values)
        )
        connection.execute(update(Prediction).where(Prediction.job_id == job_id).values(created_at=moment))


def age_blobs(runtime: Runtime, days: float) -> None:
    """Every stored blob as old as `days` (the store keeps when each was last put)."""
    store = runtime.jobs.store
    if isinstance(store, FolderBlobs):
        past = time.time() - days * 86400
        for stored in store.digests():
            os.utime(store.path(stored), (past, past))
        return
    with runtime.jobs.engine.begin() as connection:
        connection.execute(update(Blob).values(created_at=datetime.now(UTC) - timedelta(days=days)))


def stored(runtime: Runtime) -> set[str]:
    store = runtime.jobs.store
    if isinstance(store, FolderBlobs):
        return set(store.digests())
    with runtime.jobs.engine.connect() as connection:
        return set(connection.scalars(select(Blob.sha256)))


def count(runtime: Runtime, table, job_id: str) -> int:
    column = table.id if table is Job else table.job_id
    with runtime.jobs.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table).where(column == job_id))


def outputs(runtime: Runtime, job_id: str) -> set[str]:
    with runtime.jobs.engine.connect() as connection:
        return set(connection.scalars(select(Prediction.output_sha256).where(Prediction.job_id == job_id)))


def scenario(runtime: Runtime) -> dict[str, object]:
    """An old finished job, an old job still running, a new job sharing an image with the old one, and an old
    blob nobody names (a submit refused late), all stored 45 days ago."""
    only_old, shared, running_input, new_only, orphan = (png(shade) for shade in (10, 60, 110, 160, 210))
    old = submit(runtime, only_old, shared, png(20))
    run_all(runtime, old)
    running = submit(runtime, running_input)
    new = submit(runtime, shared, new_only)
    run_all(runtime, new)
    runtime.jobs.store.put(orphan)
    assert jobs.status(runtime, old)["status"] == "succeeded" and len(outputs(runtime, old)) == 3
    age_job(runtime, old, 45)
    age_job(runtime, running, 45, status="running", started_at=datetime.now(UTC) - timedelta(days=45))
    age_blobs(runtime, 45)
    kept = {digest(shared), digest(new_only), digest(running_input)} | outputs(runtime, new)
    gone = {digest(only_old), digest(png(20)), digest(orphan)} | outputs(runtime, old) - kept
    assert len(gone) == 5  # the shared image's edge map is the new job's too
    return {"old": old, "running": running, "new": new, "gone": gone, "kept": kept}


def check_pruned(runtime: Runtime, case: dict[str, object]) -> None:
    for table in (Job, JobInput, JobChunk, Prediction):
        assert count(runtime, table, case["old"]) == 0, table
    assert count(runtime, JobInput, case["running"]) == 1 and count(runtime, JobChunk, case["running"]) == 1
    assert jobs.status(runtime, case["running"])["status"] == "running"
    assert count(runtime, Prediction, case["new"]) == 2 and jobs.status(runtime, case["new"])["status"] == "succeeded"
    left = stored(runtime)
    assert not case["gone"] & left
    assert case["kept"] <= left


def test_old_finished_jobs_go_with_their_inputs_chunks_rows_and_blobs(runtime):
    case = scenario(runtime)
    assert retention.prune(runtime.jobs, DAYS) == (1, len(case["gone"]))
    check_pruned(runtime, case)
    assert retention.prune(runtime.jobs, DAYS) == (0, 0)  # nothing left to do
    run_all(runtime, case["running"])  # the old running job still has every input
    assert jobs.status(runtime, case["running"])["status"] == "succeeded"


def test_bytes_put_again_are_refreshed_and_stay(runtime):
    """A submit storing an image an old job had: the blob's time is refreshed before any job names it."""
    data = png(90)
    runtime.jobs.store.put(data)
    age_blobs(runtime, 45)
    runtime.jobs.store.put(data)  # what submit does before it writes the job
    assert retention.prune(runtime.jobs, DAYS) == (0, 0)
    assert digest(data) in stored(runtime)


def test_two_processes_pruning_at_once_do_no_harm(runtime):
    case = scenario(runtime)
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def prune() -> None:
        try:
            results.append(retention.prune(runtime.jobs, DAYS))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=prune) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors and runtime.jobs.engine.url.get_backend_name() == "sqlite":
        assert all("locked" in str(error) for error in errors), errors  # the next hourly run finishes it
        retention.prune(runtime.jobs, DAYS)
    else:
        assert not errors, errors
        assert sum(jobs_removed for jobs_removed, _ in results) == 1
        assert sum(blobs for _, blobs in results) == len(case["gone"])
    check_pruned(runtime, case)


def test_a_folder_store_is_pruned_too(tmp_path):
    runtime = make_runtime(tmp_path / "home", jobs_store="jobstore")
    try:
        assert isinstance(runtime.jobs.store, FolderBlobs)
        case = scenario(runtime)
        leftover = runtime.jobs.store.root / "00" / "00" / ".tmp-crashed"
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"half a file")
        os.utime(leftover, (time.time() - 45 * 86400,) * 2)
        assert retention.prune(runtime.jobs, DAYS) == (1, len(case["gone"]) + 1)
        check_pruned(runtime, case)
        assert not leftover.exists()
        assert not list(runtime.jobs.store.root.glob("??/??/.del-*"))
    finally:
        runtime.close()


def test_a_folder_blob_refreshed_while_it_is_removed_stays(tmp_path):
    store = FolderBlobs(tmp_path / "store")
    data = png(30)
    key = store.put(data)
    past = time.time() - 45 * 86400
    os.utime(store.path(key), (past, past))
    store.put(data)  # a put of the same bytes between the sweep's listing and its removal
    assert not store.remove(key, time.time() - DAYS * 86400)
    assert store.get(key) == data
    os.utime(store.path(key), (past, past))
    assert store.remove(key, time.time() - DAYS * 86400) and store.get(key) is None
    assert store.put(data) == key and store.get(key) == data  # written again after removal


def test_with_the_history_off_jobs_are_still_pruned_on_schedule(tmp_path, monkeypatch):
    monkeypatch.setattr(retention, "EVERY_S", 0.2)  # hourly by default; the first run comes after 1-2 periods
    runtime = make_runtime(tmp_path / "home", history=False)
    try:
        assert runtime.history is None and runtime.jobs.retention is None
        old = submit(runtime, png(70))
        run_all(runtime, old)
        age_job(runtime, old, 45)
        runtime.jobs.start(runtime)  # what build_runtime does in a process that serves jobs
        deadline = time.monotonic() + 20
        while count(runtime, Job, old) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count(runtime, Job, old) == 0, "the scheduled clean-up never deleted the 45-day-old job"
        assert count(runtime, JobInput, old) == 0 and count(runtime, Prediction, old) == 0
    finally:
        runtime.close()
    assert runtime.jobs.retention._thread is None  # closed with the runtime


def test_no_job_retention_when_days_is_zero(tmp_path):
    runtime = make_runtime(tmp_path / "home", run_jobs=True, history_days=0)
    try:
        assert runtime.jobs.retention is None
    finally:
        runtime.close()
