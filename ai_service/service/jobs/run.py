"""Running one chunk of a job: THE function both executors call (the local threads and the Celery task).

Idempotent: an item that already has its result row is skipped, and rows are inserted ignoring duplicates of
(job_id, item_index), so a chunk delivered twice, or taken over from a dead worker, writes each row once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import and_, select, update

from ai_service.errors import ERRORS, ServiceError
from ai_service.service.history.rows import finish_row, pending_rows
from ai_service.service.jobs.core import ACTIVE, Jobs, require
from ai_service.service.jobs.options import model_options
from ai_service.service.jobs.service import finish, row_counts
from ai_service.service.predict import predict
from ai_service.service.upload import Caller, Upload
from ai_service.storage.schema import Job, JobChunk, JobInput, Prediction, utcnow
from ai_service.storage.writer import insert_ignoring_duplicates, unreachable

if TYPE_CHECKING:
    from ai_service.service.runtime import Runtime

#: Runs of one chunk (deliveries, take-overs) after which a chunk that keeps failing as a whole fails its job.
MAX_ATTEMPTS = 10
#: Errors of a whole call that no retry can cure: the job fails at once.
PERMANENT = frozenset({"unknown_model", "validation_error"})


def run_chunk(
    runtime: Runtime,
    job_id: str,
    start: int,
    stop: int,
    owner: str,
    *,
    interrupted: Callable[[], bool] | None = None,
) -> None:
    """Predict the items [start, stop) of a job that have no row yet and write their rows, batch by batch.

    Raises the ServiceError of a call that failed as a whole (overloaded, timeout, out_of_memory,
    model_unavailable) so that the executor retries the chunk, until MAX_ATTEMPTS; per-item errors are rows.
    `interrupted` (the local executor shutting down) hands the chunk back between batches.
    """
    jobs = require(runtime)
    jobs.ready()
    attempts = begin(jobs, job_id, start, owner)
    if attempts is None:
        return
    job = load_job(jobs, job_id)
    try:
        todo = missing_items(jobs, job_id, start, stop)
        if todo:
            ref = f"{job.model}@{job.version}" if job.version else job.model
            options = model_options(job.options, runtime.settings.models.default_top_k)
            cache = (job.options or {}).get("cache", "on") != "off"  # `cache=off` at submit: every image runs
            caller = Caller("job", job_id, job.client, job_id)
            size = batch_size(runtime, ref)
            for first in range(0, len(todo), size):
                if interrupted is not None and interrupted() or not active(jobs, job_id):
                    release(jobs, job_id, start)
                    return
                run_batch(runtime, jobs, ref, options, caller, todo[first : first + size], (job_id, start), cache)
    except ServiceError as error:
        if error.code not in PERMANENT and attempts < MAX_ATTEMPTS:
            raise
        fail(jobs, job_id, start, error, attempts)
        return
    except Exception as error:
        if attempts < MAX_ATTEMPTS or unreachable(error):  # a database that is down is waited for, however long
            raise
        fail(jobs, job_id, start, ServiceError("internal_error", f"{type(error).__name__}: {error}"), attempts)
        return
    complete(jobs, job_id, start, stop, job.total)


def begin(jobs: Jobs, job_id: str, start: int, owner: str) -> int | None:
    """Mark the chunk running for `owner` and the job running; the chunk's run count, or None when the job is
    gone or no longer active."""
    now = utcnow()
    with jobs.engine.begin() as connection:
        state = connection.scalar(select(Job.status).where(Job.id == job_id))
        if state not in ACTIVE:
            return None
        connection.execute(
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.start == start)
            .values(state="running", owner=owner[:128], heartbeat_at=now, attempts=JobChunk.attempts + 1)
        )
        if state == "queued":
            connection.execute(
                update(Job).where(Job.id == job_id, Job.status == "queued").values(status="running", started_at=now)
            )
        attempts = connection.scalar(
            select(JobChunk.attempts).where(JobChunk.job_id == job_id, JobChunk.start == start)
        )
    return int(attempts or 1)


def load_job(jobs: Jobs, job_id: str) -> Any:
    with jobs.engine.connect() as connection:
        return connection.execute(select(Job).where(Job.id == job_id)).one()


def active(jobs: Jobs, job_id: str) -> bool:
    """Still queued or running (a cancel stops the chunk between batches)."""
    with jobs.engine.connect() as connection:
        return connection.scalar(select(Job.status).where(Job.id == job_id)) in ACTIVE


def missing_items(jobs: Jobs, job_id: str, start: int, stop: int) -> list[Any]:
    """The chunk's inputs that have no result row yet, in order."""
    row = Prediction.__table__.alias("done")
    statement = (
        select(JobInput)
        .outerjoin(row, and_(row.c.job_id == JobInput.job_id, row.c.item_index == JobInput.item_index))
        .where(JobInput.job_id == job_id, JobInput.item_index >= start, JobInput.item_index < stop, row.c.id.is_(None))
        .order_by(JobInput.item_index)
    )
    with jobs.engine.connect() as connection:
        return list(connection.execute(statement).all())


def batch_size(runtime: Runtime, ref: str) -> int:
    """Images per predict call: the model's own batch limit (once loaded), else the engine's setting or default."""
    return runtime.engine.batch_size_for(runtime.resolve(ref).model, runtime.device)


def upload(jobs: Jobs, item: Any) -> Upload | ServiceError:
    """An input as predict takes it: its bytes from the store, or the error it was refused with at submit."""
    if item.error_code is not None:
        code = item.error_code if item.error_code in ERRORS else "unprocessable"
        return ServiceError(code, item.error_message or code)
    data = jobs.store.get(item.sha256) if item.sha256 else None
    if data is None:
        raise ServiceError(
            "unavailable",
            f"Input {item.item_index} ({item.path}) is not in the job store; is AI_SERVICE_JOBS_STORE the same "
            "folder on every machine?",
            {"item_index": item.item_index},
        )
    return Upload(data, item.path)


def run_batch(
    runtime: Runtime,
    jobs: Jobs,
    ref: str,
    options: Any,
    caller: Caller,
    items: list[Any],
    chunk: tuple[str, int],
    cache: bool = True,
) -> None:
    """One predict call and its rows, written in one transaction with the chunk's heartbeat (`cache`: answer inputs
    seen before from the result cache, as /predict does; a re-run job costs no forward)."""
    uploads = [upload(jobs, item) for item in items]
    outcome = predict(runtime, ref, uploads, options, None, bulk=True, cache=cache)
    pending = pending_rows(
        caller,
        (outcome.model, outcome.version, outcome.task),
        uploads,
        outcome.results,
        outcome.timing_ms,
        outcome.batch_size,
        indexes=[item.item_index for item in items],
    )
    rows = [finish_row(row, jobs.store) for row in pending]
    job_id, start = chunk
    with jobs.engine.begin() as connection:
        connection.execute(insert_ignoring_duplicates(jobs.engine, Prediction.__table__), rows)
        connection.execute(
            update(JobChunk).where(JobChunk.job_id == job_id, JobChunk.start == start).values(heartbeat_at=utcnow())
        )


def release(jobs: Jobs, job_id: str, start: int) -> None:
    """Hand an unfinished chunk back (pending, no owner) for any executor to take."""
    with jobs.engine.begin() as connection:
        connection.execute(
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.start == start, JobChunk.state == "running")
            .values(state="pending", owner=None)
        )


def fail(jobs: Jobs, job_id: str, start: int, error: ServiceError, attempts: int) -> None:
    """A chunk that cannot run (a permanent error, or too many attempts) fails its job with that error."""
    logger.error("job {}: chunk {} failed after {} attempt(s): {}: {}", job_id, start, attempts, error.code, error)
    finish(jobs, job_id, "failed", error.code, error.message)
    release(jobs, job_id, start)


def complete(jobs: Jobs, job_id: str, start: int, stop: int, total: int) -> None:
    """Mark the chunk done; when every item has its row the job succeeded (or failed: every item failed)."""
    with jobs.engine.begin() as connection:
        connection.execute(
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.start == start, JobChunk.stop == stop)
            .values(state="done", heartbeat_at=utcnow())
        )
        counts = row_counts(connection, [job_id]).get(job_id, {})
    done, failed = counts.get("ok", 0), counts.get("error", 0)
    if done + failed < total:
        return
    if done:
        finished = finish(jobs, job_id, "succeeded")
    else:
        finished = finish(jobs, job_id, "failed", "unprocessable", f"All {total} inputs failed; see the results.")
    if finished:
        logger.info("job {}: finished, {} ok, {} failed", job_id, done, failed)
