"""The local executor: threads in the service process run jobs in the background, share them across processes
through the database, take over chunks of dead or silent owners, hand chunks back on shutdown, and resume
unfinished jobs after the service is killed and started again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from databases import private_server
from jobs_support import CALLER, digit_items, make_runtime, rows_per_item
from live_gunicorn import running_gunicorn
from sqlalchemy import select, update

from ai_service.service import jobs
from ai_service.service.runtime import Runtime, build_runtime
from ai_service.settings import load_settings
from ai_service.storage.schema import JobChunk, utcnow


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def chunk_states(runtime: Runtime, job_id: str) -> dict[int, tuple[str, str | None]]:
    with runtime.jobs.engine.connect() as connection:
        found = connection.execute(
            select(JobChunk.start, JobChunk.state, JobChunk.owner).where(JobChunk.job_id == job_id)
        ).all()
    return {start: (state, owner) for start, state, owner in found}


def finished(runtime: Runtime, job_id: str) -> dict | None:
    status = jobs.status(runtime, job_id)
    return status if status["status"] not in ("queued", "running") else None


def test_the_local_executor_runs_a_job_in_the_background(tmp_path, digits_split):
    runtime = make_runtime(tmp_path / "home")
    try:
        job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 100), {}, CALLER)["id"]
        status = wait_for(lambda: finished(runtime, job_id), 60, "the job finishes")
        assert (status["status"], status["done"], status["failed"]) == ("succeeded", 100, 0)
        assert status["executor"] == "local" and status["throughput_per_s"] > 0
        assert rows_per_item(runtime, job_id) == {index: 1 for index in range(100)}
        owners = {owner for _, owner in chunk_states(runtime, job_id).values()}
        assert owners == {runtime.jobs.executor.owner(0)}
        assert runtime.jobs.describe() == {"enabled": True, "executor": "local", "workers": 1, "running": []}
    finally:
        runtime.close()


def executor_threads(runtime: Runtime) -> list[str]:
    """This runtime's local executor threads that are alive (other tests' runtimes may have their own)."""
    executor = runtime.jobs.executor
    threads = [*executor._threads, *([executor._beat_thread] if executor._beat_thread is not None else [])]
    return sorted(thread.name for thread in threads if thread.is_alive())


def test_threads_run_only_while_there_is_work(tmp_path, digits_split):
    """A process with no job polls nothing; a submit starts the threads and they end with the work."""
    runtime = make_runtime(tmp_path / "home", jobs_local_workers=2)
    try:
        assert executor_threads(runtime) == []  # nothing to resume: no thread started
        job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 40), {}, CALLER)["id"]
        assert executor_threads(runtime) == ["jobs-0", "jobs-1", "jobs-heartbeat"]
        wait_for(lambda: finished(runtime, job_id), 60, "the job finishes")
        wait_for(lambda: executor_threads(runtime) == [], 30, "the threads end with the work")
        again = jobs.submit(runtime, "digits", digit_items(digits_split, 20), {}, CALLER)["id"]
        assert wait_for(lambda: finished(runtime, again), 60, "a later job runs too")["done"] == 20
    finally:
        runtime.close()


def test_two_processes_worth_of_executors_share_a_job(tmp_path, digits_split):
    """Two runtimes on one database stand for two gunicorn workers: each chunk is claimed once."""
    first = make_runtime(tmp_path / "home", jobs_local_workers=2, jobs_chunk_size=8)
    second = make_runtime(tmp_path / "home", jobs_local_workers=2, jobs_chunk_size=8)
    try:
        job_id = jobs.submit(first, "digits", digit_items(digits_split, 160), {}, CALLER)["id"]
        second.jobs.executor.dispatch(job_id, [])  # wake it as its own poll would
        status = wait_for(lambda: finished(first, job_id), 60, "the job finishes")
        assert (status["status"], status["done"]) == ("succeeded", 160)
        assert rows_per_item(first, job_id) == {index: 1 for index in range(160)}
        with first.jobs.engine.connect() as connection:
            attempts = connection.scalars(select(JobChunk.attempts).where(JobChunk.job_id == job_id)).all()
        assert attempts == [1] * 20  # no chunk ran twice
    finally:
        first.close()
        second.close()


def test_stale_and_dead_owners_are_taken_over(tmp_path, digits_split):
    idle = make_runtime(tmp_path / "home", jobs_local_workers=0)
    job_id = jobs.submit(idle, "digits", digit_items(digits_split, 48), {}, CALLER)["id"]
    gone = subprocess.Popen(["true"])  # a process of this host that no longer exists
    gone.wait()
    dead = gone.pid
    live_elsewhere = "other-host:1/0"
    with idle.jobs.engine.begin() as connection:
        for start, owner, age in ((0, live_elsewhere, 3600), (16, f"{socket.gethostname()}:{dead}/0", 0)):
            connection.execute(
                update(JobChunk)
                .where(JobChunk.job_id == job_id, JobChunk.start == start)
                .values(state="running", owner=owner, heartbeat_at=utcnow() - timedelta(seconds=age))
            )
        connection.execute(  # a live owner elsewhere that still reports: left alone
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.start == 32)
            .values(state="running", owner=live_elsewhere, heartbeat_at=utcnow() + timedelta(hours=1))
        )
    idle.close()
    runtime = make_runtime(tmp_path / "home", jobs_stale_after_s=30)
    try:
        wait_for(lambda: len(rows_per_item(runtime, job_id)) == 32, 60, "the stale and the dead chunk are run")
        time.sleep(1.5)  # a poll or more later: the live chunk is still not taken
        states = chunk_states(runtime, job_id)
        assert states[0][0] == states[16][0] == "done"
        assert states[32] == ("running", live_elsewhere)
        assert sorted(rows_per_item(runtime, job_id)) == list(range(32))
        assert jobs.status(runtime, job_id)["status"] == "running"
    finally:
        runtime.close()


def test_close_hands_the_running_chunk_back(tmp_path, digits_split):
    runtime = make_runtime(tmp_path / "home", jobs_chunk_size=200)
    job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 600), {}, CALLER)["id"]
    wait_for(lambda: rows_per_item(runtime, job_id), 60, "the first rows")
    runtime.close()
    check = make_runtime(tmp_path / "home", jobs_local_workers=0)
    try:
        written = len(rows_per_item(check, job_id))
        states = chunk_states(check, job_id)
        assert written < 600, "the job finished before close(); make it larger"
        assert all(state in ("pending", "done") for state, _ in states.values()), states
        assert jobs.status(check, job_id)["status"] == "running"
    finally:
        check.close()


def test_a_database_killed_mid_job_is_waited_for(tmp_path, digits_split):
    """PostgreSQL crashes and comes back: the executor retries, and every item still has exactly one row."""
    with private_server("postgresql") as server:
        runtime = make_runtime(tmp_path / "home", database_url=server.url, jobs_chunk_size=20)
        try:
            job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 600), {}, CALLER)["id"]
            wait_for(lambda: len(rows_per_item(runtime, job_id)) >= 20, 60, "the first rows")
            before = len(rows_per_item(runtime, job_id))
            server.stop(kill=True)
            assert before < 500, f"the job was nearly done before the crash ({before} rows); make it larger"
            time.sleep(1.0)
            server.start()
            status = wait_for(lambda: finished(runtime, job_id), 120, "the job finishes after the restart")
            assert (status["status"], status["done"]) == ("succeeded", 600)
            assert rows_per_item(runtime, job_id) == {index: 1 for index in range(600)}
        finally:
            runtime.close()


def kill_server(server) -> None:
    """SIGKILL gunicorn's workers and master, as a crash or an OOM killer would: nothing runs its shutdown."""
    for pid in [*server.workers(), server.process.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.process.wait(timeout=30)


def test_a_killed_service_resumes_its_jobs_after_a_restart(tmp_path, digits_split):
    workdir = tmp_path / "service"
    total = 1200
    submitter = make_runtime(workdir / "home", jobs_local_workers=0, jobs_chunk_size=40)
    job_id = jobs.submit(submitter, "digits", digit_items(digits_split, total), {}, CALLER)["id"]
    settings = {"jobs_chunk_size": 40, "jobs_stale_after_s": 300}
    try:
        with running_gunicorn(workdir, workers=2, threads=2, **settings) as server:
            wait_for(
                lambda: (
                    len(rows_per_item(submitter, job_id)) >= 40
                    and any(state == "running" for state, _ in chunk_states(submitter, job_id).values())
                ),
                60,
                "the service is in the middle of the job",
            )
            kill_server(server)
        written = len(rows_per_item(submitter, job_id))
        states = chunk_states(submitter, job_id)
        assert written < total, f"the job finished before the kill ({written} rows); make it larger"
        assert any(state == "running" for state, _ in states.values()), states  # owned by killed workers
        with running_gunicorn(workdir, workers=1, threads=2, **settings):
            status = wait_for(lambda: finished(submitter, job_id), 120, "the restarted service finishes the job")
        assert (status["status"], status["done"], status["failed"]) == ("succeeded", total, 0)
        assert rows_per_item(submitter, job_id) == {index: 1 for index in range(total)}
    finally:
        submitter.close()


@pytest.mark.parametrize("way", ["no local workers", "run_jobs=False"])
def test_a_process_told_not_to_run_jobs_runs_none(tmp_path, digits_split, way):
    """jobs_local_workers=0, or a CLI command's runtime (run_jobs=False), never takes the service's chunks."""
    if way == "no local workers":
        runtime = make_runtime(tmp_path / "home", jobs_local_workers=0)
    else:
        settings = load_settings({"home": str(tmp_path / "home")})
        settings.ensure_dirs()
        runtime = build_runtime(settings, run_jobs=False)
    try:
        job_id = jobs.submit(runtime, "digits", digit_items(digits_split, 4), {}, CALLER)["id"]
        time.sleep(1.5)
        assert jobs.status(runtime, job_id)["status"] == "queued"
    finally:
        runtime.close()


def test_with_a_broker_the_service_only_enqueues(tmp_path):
    """AI_SERVICE_BROKER_URL set: Celery workers run the chunks, the web process starts no job threads."""
    runtime = make_runtime(tmp_path / "home", broker_url="redis://127.0.0.1:6379/15")
    try:
        assert runtime.jobs.executor.name == "celery"
        assert runtime.jobs.describe() == {"enabled": True, "executor": "celery"}
    finally:
        runtime.close()
