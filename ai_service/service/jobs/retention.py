"""Retention for jobs (AI_SERVICE_HISTORY_DAYS): finished jobs older than the cutoff go, with their inputs, chunks
and result rows, then the stored bytes that nothing names any more.

It runs on its own hourly thread in every process that opens the jobs (`Jobs.start`), so it works with the history
off and with a Celery broker. Several processes doing it at once only repeat each other's work: every step is a
DELETE whose WHERE re-checks why the row may go (a finished job; a blob still older than the cutoff), and a blob
a submit or a chunk stores again is refreshed before any row names it (see store.py), so it stays.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger
from sqlalchemy import Engine, delete, select, union

from ai_service.service.jobs.core import FINISHED
from ai_service.service.jobs.store import DatabaseBlobs, FolderBlobs
from ai_service.storage.schema import Blob, Job, JobChunk, JobInput, Prediction

if TYPE_CHECKING:
    from ai_service.service.jobs.core import Jobs

#: Jobs read per round, rows deleted per transaction (keeps locks short), blobs checked per statement.
JOBS_PER_ROUND = 100
ROWS_PER_TRANSACTION = 5000
BLOBS_PER_STATEMENT = 500
#: Seconds between two clean-ups of one process.
EVERY_S = 3600.0


def prune(jobs: Jobs, days: float, stopping: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """Delete jobs finished more than `days` ago and then the unreferenced blobs older than that; (jobs, blobs).

    `stopping` (the process shutting down) ends it between two jobs or two batches; the next run goes on."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    jobs.ready()
    removed_jobs = delete_finished(jobs.engine, cutoff, stopping)
    removed_blobs = 0 if stopping() else sweep(jobs, cutoff, stopping)
    if removed_jobs or removed_blobs:
        logger.info(
            "jobs: retention removed {} jobs and {} stored inputs/outputs older than {:g} days",
            removed_jobs,
            removed_blobs,
            days,
        )
    return removed_jobs, removed_blobs


def delete_finished(engine: Engine, cutoff: datetime, stopping: Callable[[], bool]) -> int:
    """Every job that succeeded, failed or was cancelled before the cutoff, oldest first."""
    deleted, tried = 0, set()
    while True:
        with engine.connect() as connection:
            found = connection.scalars(
                select(Job.id)
                .where(Job.status.in_(FINISHED), Job.finished_at < cutoff)
                .order_by(Job.finished_at, Job.id)
                .limit(JOBS_PER_ROUND)
            ).all()
        fresh = [job_id for job_id in found if job_id not in tried]
        if not fresh:
            return deleted
        for job_id in fresh:
            if stopping():
                return deleted
            tried.add(job_id)
            deleted += delete_job(engine, job_id, cutoff)


def delete_job(engine: Engine, job_id: str, cutoff: datetime) -> int:
    """A job's result rows and inputs in short transactions, then its chunks and the job row together (last, so
    a clean-up cut short is finished by the next one); 1 when this call deleted the job."""
    for table, key in ((Prediction, Prediction.id), (JobInput, JobInput.item_index)):
        while True:
            with engine.begin() as connection:
                keys = connection.scalars(
                    select(key).where(table.job_id == job_id).limit(ROWS_PER_TRANSACTION)  # type: ignore[attr-defined]
                ).all()
                if not keys:
                    break
                connection.execute(delete(table).where(table.job_id == job_id, key.in_(keys)))  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(delete(JobChunk).where(JobChunk.job_id == job_id))
        gone = connection.execute(
            delete(Job).where(Job.id == job_id, Job.status.in_(FINISHED), Job.finished_at < cutoff)
        )
    return gone.rowcount


def sweep(jobs: Jobs, cutoff: datetime, stopping: Callable[[], bool]) -> int:
    """Blobs of the job store older than the cutoff that no job input and no result row names."""
    store = jobs.store
    if isinstance(store, DatabaseBlobs):
        return sweep_table(jobs.engine, cutoff, stopping)
    if isinstance(store, FolderBlobs):
        return sweep_folder(jobs.engine, store, cutoff.timestamp(), stopping)
    return 0


def sweep_table(engine: Engine, cutoff: datetime, stopping: Callable[[], bool]) -> int:
    """Table `blobs`, by sha256 ranges: the unreferenced ones of each batch go in one DELETE that re-checks their age
    (a submit or a chunk puts its bytes, refreshing them, before it writes the rows that name them)."""
    removed, last = 0, ""
    while True:
        with engine.connect() as connection:
            batch = connection.scalars(
                select(Blob.sha256)
                .where(Blob.sha256 > last, Blob.created_at < cutoff)
                .order_by(Blob.sha256)
                .limit(BLOBS_PER_STATEMENT)
            ).all()
        if not batch or stopping():
            return removed
        last = batch[-1]
        unused = set(batch) - referenced(engine, list(batch))
        if unused:
            with engine.begin() as connection:
                gone = connection.execute(delete(Blob).where(Blob.sha256.in_(unused), Blob.created_at < cutoff))
            removed += gone.rowcount


def sweep_folder(engine: Engine, store: FolderBlobs, older_than: float, stopping: Callable[[], bool]) -> int:
    """A folder store: files older than the cutoff that nothing names are removed (safe against a put at once)."""
    removed = store.leftovers(older_than)
    for batch in batches(store.digests(older_than), BLOBS_PER_STATEMENT):
        if stopping():
            break
        for digest in set(batch) - referenced(engine, batch):
            removed += store.remove(digest, older_than)
    return removed


def referenced(engine: Engine, digests: list[str]) -> set[str]:
    """Which of these sha256s a job input or a result row (input or output) names: one query per batch, so an
    unindexed job_inputs.sha256 costs one scan per BLOBS_PER_STATEMENT blobs, not one per blob."""
    statement = union(
        select(JobInput.sha256).where(JobInput.sha256.in_(digests)),
        select(Prediction.input_sha256).where(Prediction.input_sha256.in_(digests)),
        select(Prediction.output_sha256).where(Prediction.output_sha256.in_(digests)),
    )
    with engine.connect() as connection:
        return set(connection.scalars(statement))


def batches(digests: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for digest in digests:
        batch.append(digest)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Retention:
    """The hourly clean-up thread of one process (started after a fork, in the process that serves jobs)."""

    def __init__(self, jobs: Jobs, days: float, every_s: float | None = None) -> None:
        self.jobs, self.days = jobs, days
        #: Seconds between runs (each varies by a tenth, so the processes of one server spread out); the first
        #: run comes after min(60 s, every_s) and up to as long again.
        self.every_s = every_s or EVERY_S
        self._pid = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._pid == os.getpid() and self._thread is not None:
            return
        self._pid, self._stop = os.getpid(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs-retention", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        if self._pid != os.getpid() or self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        wait = min(60.0, self.every_s) * random.uniform(1.0, 2.0)
        while not self._stop.wait(wait):
            try:
                prune(self.jobs, self.days, self._stop.is_set)
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                logger.warning("jobs: scheduled clean-up failed ({}); retrying later", str(error).splitlines()[0])
            wait = self.every_s * random.uniform(0.9, 1.1)
