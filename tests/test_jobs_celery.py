"""Bulk jobs on Celery: real brokers (Redis, RabbitMQ), real `ai-service worker` processes, faults injected.

The web side is a Runtime in this process (submit, status, cancel through ai_service.service.jobs) that shares an
SQLite file (WAL) under a temporary home with the workers. Every wait is bounded; a failure prints the workers' logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from brokers import Worker, private_redis, rabbitmq_vhost, redis_database, wait_for
from conftest import encode
from sqlalchemy import func, select

from ai_service.errors import ServiceError
from ai_service.service import jobs
from ai_service.service.jobs.archive import JobItem
from ai_service.service.runtime import Runtime, build_runtime
from ai_service.service.upload import Caller
from ai_service.settings import load_settings
from ai_service.storage.schema import JobChunk, Prediction
from ai_service.worker.app import QUEUE
from ai_service.worker.executor import CeleryExecutor

IMAGES = 320
CHUNK = 16
#: Short, so that a chunk a killed worker held on Redis comes back within seconds.
VISIBILITY_S = 5
#: Beyond the visibility timeout: the restore sweep (every VISIBILITY_S / 2) and the rest of the job.
REDELIVERY_SLACK_S = 40
JOB_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def digits(digits_split) -> tuple[list[JobItem], list[int]]:
    """IMAGES held-out digits as PNG files, with their labels."""
    from ai_service.models.builtin.digits_training import render_digit

    pixels, labels = digits_split.test_images, digits_split.test_labels
    count = len(pixels)
    items = [JobItem(f"digits/{i:04d}.png", encode(render_digit(pixels[i % count], 32)), None) for i in range(IMAGES)]
    return items, [int(labels[i % count]) for i in range(IMAGES)]


class Deployment:
    """A web-side Runtime and any number of workers on one broker, one database and one home."""

    def __init__(self, tmp_path: Path, broker_url: str, visibility_s: float = 900) -> None:
        self.tmp = tmp_path
        self.env = {
            "AI_SERVICE_HOME": str(tmp_path / "home"),
            "AI_SERVICE_BROKER_URL": broker_url,
            "AI_SERVICE_JOBS_CHUNK_SIZE": str(CHUNK),
            "AI_SERVICE_JOBS_VISIBILITY_TIMEOUT_S": str(visibility_s),
            "AI_SERVICE_DEVICE": "cpu",
            "AI_SERVICE_TORCH_THREADS": "1",
            "AI_SERVICE_LOG_TO_FILE": "0",
            "AI_SERVICE_LOG_LEVEL": "INFO",
            "AI_SERVICE_PRELOAD": "digits",
        }
        self.workers: list[Worker] = []
        self.closed = False
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        """The web side, built on first use (while the workers started before it import torch)."""
        if self._runtime is None:
            overrides = {key.removeprefix("AI_SERVICE_").lower(): value for key, value in self.env.items()}
            self._runtime = build_runtime(load_settings(overrides))
            assert self._runtime.jobs is not None and self._runtime.jobs.executor.name == "celery"
        return self._runtime

    @property
    def engine(self):
        return self.runtime.jobs.engine

    def ready(self, *workers: Worker) -> None:
        """Build the web side, then wait until every worker consumes."""
        assert self.runtime is not None
        for worker in workers:
            worker.wait_ready()

    def worker(self, name: str, *args: str, **env: str) -> Worker:
        started = Worker(name, {**self.env, **env}, self.tmp / f"{name}.log", *args)
        self.workers.append(started)
        return started

    def submit(self, items: list[JobItem]) -> str:
        answer = jobs.submit(self.runtime, "digits", items, {"top_k": 1}, Caller("api", "test", "test"), "digits")
        assert answer["status"] == "queued" and answer["total"] == len(items)
        return answer["id"]

    def indexes(self, job_id: str) -> list[int]:
        """The item index of every result row of the job (duplicates included: there must be none)."""
        with self.engine.connect() as connection:
            return list(connection.scalars(select(Prediction.item_index).where(Prediction.job_id == job_id)))

    def chunks(self, job_id: str) -> list:
        with self.engine.connect() as connection:
            return list(connection.execute(select(JobChunk).where(JobChunk.job_id == job_id).order_by(JobChunk.start)))

    def wait_rows(self, job_id: str, at_least: int, timeout: float = JOB_TIMEOUT_S) -> int:
        def enough() -> int:
            with self.engine.connect() as connection:
                count = connection.scalar(select(func.count()).where(Prediction.job_id == job_id))
            return count if count >= at_least else 0

        return int(self.wait(enough, timeout, f"{at_least} result rows of job {job_id}"))

    def wait_finished(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict:
        def finished() -> dict | None:
            state = jobs.status(self.runtime, job_id)
            return state if state["status"] in ("succeeded", "failed", "cancelled") else None

        return self.wait(finished, timeout, f"job {job_id} to finish")

    def wait(self, condition, timeout: float, what: str, interval: float = 0.05):
        """wait_for, with every worker's log in the failure message."""
        try:
            return wait_for(condition, timeout, what, interval)
        except AssertionError as error:
            logs = "\n".join(f"--- {w.name} ---\n{w.output()[-3000:]}" for w in self.workers)
            raise AssertionError(f"{error}\n{logs}") from None

    def close(self) -> list[int | None]:
        """Stop every worker (warm shutdown, all at once) and the runtime, once; the workers' exit statuses."""
        for worker in self.workers:
            worker.terminate()
        statuses = [worker.stop() for worker in self.workers]
        if not self.closed and self._runtime is not None:
            self.closed = True
            self._runtime.close()
        return statuses


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_database() as url:
        yield url


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request) -> Iterator[str]:
    with redis_database() if request.param == "redis" else rabbitmq_vhost() as url:
        yield url


def assert_exactly_once(deployment: Deployment, job_id: str, state: dict) -> None:
    """One result row per input, indices 0..IMAGES-1, and counts that add up."""
    indexes = deployment.indexes(job_id)
    assert len(indexes) == IMAGES, f"{len(indexes)} rows for {IMAGES} inputs"
    assert sorted(indexes) == list(range(IMAGES))
    assert state["status"] == "succeeded", state
    assert (state["done"], state["failed"], state["pending"], state["total"]) == (IMAGES, 0, 0, IMAGES)


def test_a_digits_job_runs_through_one_worker(tmp_path, broker_url, digits):
    """Submitted in this process, run by one worker process: one correct row per input, every chunk done by it,
    and a warm shutdown that exits 0."""
    items, labels = digits
    deployment = Deployment(tmp_path, broker_url)
    try:
        worker = deployment.worker("single", "--concurrency", "1")
        deployment.ready(worker)
        started = time.monotonic()
        job_id = deployment.submit(items)
        state = deployment.wait_finished(job_id)
        seconds = time.monotonic() - started
        assert_exactly_once(deployment, job_id, state)
        assert state["executor"] == "celery" and state["throughput_per_s"] > 0
        with deployment.engine.connect() as connection:
            found = dict(
                connection.execute(
                    select(Prediction.item_index, Prediction.top1_label).where(Prediction.job_id == job_id)
                ).all()
            )
        accuracy = sum(found[i] == str(label) for i, label in enumerate(labels)) / IMAGES
        assert accuracy >= 0.9, accuracy
        chunks = deployment.chunks(job_id)
        assert len(chunks) == IMAGES // CHUNK
        assert all(c.state == "done" and c.owner.startswith("single@") for c in chunks)
        print(f"\n{broker_url.split(':')[0]}: {IMAGES} images in {seconds:.1f}s through one worker, acc {accuracy}")
        assert deployment.close() == [0], "SIGTERM is a warm shutdown: the worker exits 0"
    finally:
        deployment.close()


def test_dispatch_needs_no_worker_and_fails_clearly_without_a_broker(tmp_path, redis_url):
    """Chunks wait on the broker for workers that start later; an unreachable broker is a 503, not a hang."""
    settings = load_settings({"home": str(tmp_path / "home"), "broker_url": redis_url})
    executor = CeleryExecutor(settings)
    try:
        executor.dispatch("job-without-workers", [(0, 16), (16, 32), (32, 40)])
    finally:
        executor.close()
    assert redis.Redis.from_url(redis_url).llen(QUEUE) == 3
    dead = load_settings({"home": str(tmp_path / "home"), "broker_url": "redis://127.0.0.1:1/0"})
    executor = CeleryExecutor(dead)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceError) as failure:
            executor.dispatch("job-without-broker", [(0, 16)])
    finally:
        executor.close()
    assert failure.value.code == "unavailable" and time.monotonic() - started < 30


def test_a_killed_worker_loses_nothing_and_counts_nothing_twice(tmp_path, broker_url, digits):
    """SIGKILL one of two workers half-way through a chunk: the chunk comes back (RabbitMQ: at once, when the
    connection drops; Redis: after the visibility timeout), the survivor runs only the items without a row, and
    every input ends with exactly one row. One image per batch makes a chunk sixteen transactions, so the kill
    lands with part of the chunk written."""
    deployment = Deployment(tmp_path, broker_url, visibility_s=VISIBILITY_S)
    try:
        # Only the broker may bring the chunk back here: no idle-worker sweep (see the lost-chunks test) in time.
        env = {"AI_SERVICE_MAX_BATCH_SIZE": "1", "AI_SERVICE_JOBS_STALE_AFTER_S": "600"}
        victim, survivor = deployment.worker("victim", **env), deployment.worker("survivor", **env)
        deployment.ready(victim, survivor)
        job_id = deployment.submit(digits[0])

        def victim_half_way() -> int | None:
            """The start of a chunk the victim runs with 1 to CHUNK/2 of its rows written, after two done chunks.

            The victim is frozen (SIGSTOP) while this looks and stays frozen when it answers, so the kill lands on
            exactly what was seen (on a loaded machine it could otherwise finish the chunk in between)."""
            victim.freeze()
            chunks = deployment.chunks(job_id)
            written = set(deployment.indexes(job_id))
            if sum(c.state == "done" for c in chunks) >= 2:
                for chunk in chunks:
                    if chunk.state == "running" and chunk.owner.startswith("victim@"):
                        if 1 <= len(set(range(chunk.start, chunk.stop)) & written) <= CHUNK // 2:
                            return chunk.start + 1  # + 1: chunk 0 is a start too, and 0 would mean "not yet"
            victim.thaw()
            return None

        held = int(deployment.wait(victim_half_way, JOB_TIMEOUT_S, "the victim half-way through a chunk", 0.01)) - 1
        victim.kill()
        killed_at = time.monotonic()
        at_kill = set(deployment.indexes(job_id))
        written = len(set(range(held, held + CHUNK)) & at_kill)
        assert 0 < written < CHUNK, f"the kill did not land inside chunk {held} ({written} rows)"
        state = deployment.wait_finished(job_id, timeout=VISIBILITY_S + REDELIVERY_SLACK_S)
        recovered_s = time.monotonic() - killed_at
        assert_exactly_once(deployment, job_id, state)
        (taken_over,) = [c for c in deployment.chunks(job_id) if c.start == held]
        assert taken_over.owner.startswith("survivor@") and taken_over.attempts == 2, taken_over
        assert taken_over.state == "done"
        print(
            f"\n{broker_url.split(':')[0]}: victim killed in chunk {held} with {written}/{CHUNK} of its rows written "
            f"({len(at_kill)}/{IMAGES} in all); job finished {recovered_s:.1f}s after the kill"
        )
    finally:
        deployment.close()


def test_a_broker_restart_mid_job_is_survived(tmp_path, digits):
    """Kill the (private) Redis mid-job and start it again: queued chunks are in its append-only file, the worker
    reconnects, an acknowledgement lost with the connection only makes a chunk run again (its rows are skipped)."""
    with private_redis() as server:
        deployment = Deployment(tmp_path, server.url, visibility_s=VISIBILITY_S)
        try:
            worker = deployment.worker("restarted", AI_SERVICE_JOBS_STALE_AFTER_S="3")
            deployment.ready(worker)
            job_id = deployment.submit(digits[0])
            rows_before = deployment.wait_rows(job_id, 2 * CHUNK)
            server.kill()
            killed_at = time.monotonic()
            time.sleep(2)
            server.start()
            state = deployment.wait_finished(job_id)
            seconds = time.monotonic() - killed_at
            print(f"\nbroker killed at {rows_before} rows, down 2 s; job finished {seconds:.1f}s after the kill")
            assert rows_before < IMAGES, "the job finished before the restart: make it longer"
            assert_exactly_once(deployment, job_id, state)
        finally:
            deployment.close()


def test_chunks_the_broker_lost_are_sent_again(tmp_path, redis_url, digits):
    """A broker that lost every queued message (a Redis without persistence, restarted): an idle worker finds the
    job's chunks untouched for AI_SERVICE_JOBS_STALE_AFTER_S in the database and sends them again."""
    deployment = Deployment(tmp_path, redis_url)
    try:
        job_id = deployment.submit(digits[0][:64])
        broker = redis.Redis.from_url(redis_url)
        assert broker.llen(QUEUE) == 64 // CHUNK
        broker.delete(QUEUE)
        # Two prefork children with two GPUs listed: each child is pinned to its own (the device stays the CPU).
        worker = deployment.worker("sweeper", "-c", "2", AI_SERVICE_JOBS_STALE_AFTER_S="2", AI_SERVICE_GPUS="0,1")
        deployment.ready(worker)
        state = deployment.wait_finished(job_id, timeout=60)
        assert state["status"] == "succeeded" and state["done"] == 64
        assert sorted(deployment.indexes(job_id)) == list(range(64))
        assert worker.output().count("was lost by the broker; sent again") == 64 // CHUNK
        assert "slot 0, GPU 0" in worker.output() and "slot 1, GPU 1" in worker.output()
    finally:
        deployment.close()


def test_cancel_mid_job_skips_the_rest_and_keeps_what_is_done(tmp_path, redis_url, digits):
    deployment = Deployment(tmp_path, redis_url)
    try:
        worker = deployment.worker("cancelled", "--pool", "solo")
        deployment.ready(worker)
        job_id = deployment.submit(digits[0])
        deployment.wait_rows(job_id, 2 * CHUNK)
        answer = jobs.cancel(deployment.runtime, job_id)
        assert answer["status"] == "cancelled" and answer["finished_at"] is not None
        done_at_cancel = set(deployment.indexes(job_id))
        broker = redis.Redis.from_url(redis_url)

        def queue_drained() -> bool:
            waiting = sum(broker.llen(key) for key in broker.scan_iter(f"{QUEUE}*"))
            return waiting == 0 and broker.hlen("unacked") == 0

        deployment.wait(queue_drained, JOB_TIMEOUT_S, "the worker to take every remaining chunk")
        time.sleep(1.0)  # a chunk that ran anyway would have written its rows by now
        indexes = deployment.indexes(job_id)
        assert len(indexes) == len(set(indexes)) and done_at_cancel <= set(indexes)
        assert len(indexes) < IMAGES
        state = jobs.status(deployment.runtime, job_id)
        assert state["status"] == "cancelled" and state["done"] == len(indexes)
        skipped = [c for c in deployment.chunks(job_id) if c.attempts == 0]
        assert skipped and all(c.state == "pending" for c in skipped)
        assert not {i for c in skipped for i in range(c.start, c.stop)} & set(indexes)
        with pytest.raises(ServiceError) as again:
            jobs.cancel(deployment.runtime, job_id)
        assert again.value.code == "invalid_state"
    finally:
        deployment.close()


def test_the_default_concurrency_sizes_the_pool_like_the_web_service(monkeypatch):
    """One process per core (at least one per GPU in use), or AI_SERVICE_WORKERS: never one per machine or GPU."""
    from ai_service.server import cores
    from ai_service.worker.main import concurrency_for, parse_args

    monkeypatch.setattr(cores, "available_cores", lambda: 16)
    assert parse_args([]).concurrency == 0
    assert concurrency_for(0, load_settings({"device": "cpu"})) == 16
    assert concurrency_for(0, load_settings({"device": "cuda", "gpus": "0,1"})) == 16
    assert concurrency_for(0, load_settings({"gpus": ",".join(map(str, range(20)))})) == 20
    assert concurrency_for(0, load_settings({"device": "cuda", "gpus": "0", "workers": 8})) == 8
    assert concurrency_for(3, load_settings({"workers": 8})) == 3
