"""Accepting, watching, listing and cancelling jobs: what the API, the Jobs page and the CLI call."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sized
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import Connection, and_, func, insert, or_, select, update

from ai_service.errors import ServiceError
from ai_service.service.jobs.core import ACTIVE, FINISHED, Jobs, database, require
from ai_service.service.jobs.options import stored
from ai_service.service.jobs.store import BATCH_BYTES
from ai_service.service.upload import Caller
from ai_service.storage.schema import Job, JobChunk, JobInput, Prediction, new_id, utcnow

if TYPE_CHECKING:
    from ai_service.service.jobs.archive import JobItem
    from ai_service.service.runtime import Runtime

#: Most jobs one listing call returns.
MAX_LISTING = 500
#: job_inputs rows per INSERT statement at submit.
INPUT_ROWS = 1000
#: What submit keeps of an input until the job is written: path, size, sha256, error code, error message.
InputRow = tuple[str, int, str | None, str | None, str | None]


def submit(
    runtime: Runtime,
    model_ref: str | None,
    items: Iterable[JobItem],
    options: dict[str, Any],
    caller: Caller,
    name: str = "",
) -> dict[str, Any]:
    """Store the inputs, the job and its chunks, then hand the chunks to the executor; nothing runs here.

    `items` may be made one at a time (archive.JobItems): their bytes go to the store in batches of about
    BATCH_BYTES as they come, so memory holds one batch and one item; the job, its inputs and chunks are written
    (one transaction) only once every item is stored, so an item refused late leaves no job behind (only stored
    bytes no job names, which retention removes like any unreferenced blob)."""
    jobs = require(runtime)
    info = runtime.resolve(model_ref).info  # unknown_model before anything is stored
    kept = stored(options)
    limit = jobs.settings.jobs.max_items
    if isinstance(items, Sized):
        check_count(len(items), limit)
    job_id, now, size = new_id(), utcnow(), jobs.settings.jobs.chunk_size
    with database(jobs):
        inputs = store_inputs(jobs, items, limit)
        total = len(inputs)
        chunks = [(start, min(start + size, total)) for start in range(0, total, size)]
        job = {
            "id": job_id,
            "created_at": now,
            "status": "queued",
            "model": info.name,
            "version": info.version,
            "task": info.task,
            "options": kept,
            "total": total,
            "chunk_size": size,
            "source": caller.source[:16],
            "client": caller.client[:128],
            "executor": jobs.executor.name,
            "name": name[:255],
        }
        with jobs.engine.begin() as connection:
            connection.execute(insert(Job), [job])
            for first in range(0, total, INPUT_ROWS):
                connection.execute(
                    insert(JobInput),
                    [input_row(job_id, index, inputs[index]) for index in range(first, min(first + INPUT_ROWS, total))],
                )
            connection.execute(
                insert(JobChunk),
                [{"job_id": job_id, "start": a, "stop": b, "state": "pending", "attempts": 0} for a, b in chunks],
            )
    try:
        jobs.executor.dispatch(job_id, chunks)
    except ServiceError as error:
        finish(jobs, job_id, "failed", error.code, error.message)
        raise
    logger.info("job {}: {} images through {} in {} chunks ({})", job_id, total, info.key, len(chunks), name)
    return {"id": job_id, "status": "queued", "total": total}


def check_count(count: int, limit: int) -> None:
    """At least one item, at most `max_items`."""
    if not count:
        raise ServiceError("missing_file", "A job needs at least one image.")
    if count > limit:
        raise ServiceError("too_many_files", f"{count} images in one job; the limit is {limit}.", {"limit": limit})


def store_inputs(jobs: Jobs, items: Iterable[JobItem], limit: int) -> list[InputRow]:
    """Put the items' bytes in the store batch by batch as they are made; each item's (path, size, sha256, error
    code, error message), the bytes already dropped."""
    inputs: list[InputRow] = []
    batch: dict[str, bytes] = {}
    held = 0
    for item in items:
        if len(inputs) >= limit:
            check_count(len(inputs) + 1, limit)
        path = item.path[:1024]
        if item.error is not None:
            inputs.append((path, 0, None, item.error.code, item.error.message))
        elif not item.data:
            inputs.append((path, 0, None, "empty_file", "The image is zero bytes."))
        else:
            digest = hashlib.sha256(item.data).hexdigest()
            inputs.append((path, len(item.data), digest, None, None))
            if digest not in batch:
                batch[digest] = item.data
                held += len(item.data)
        del item
        if held >= BATCH_BYTES:
            jobs.store.put_many(batch)  # the bytes first: a job never names an input that is not stored
            batch, held = {}, 0
    check_count(len(inputs), limit)
    if batch:
        jobs.store.put_many(batch)
    return inputs


def input_row(job_id: str, index: int, item: InputRow) -> dict[str, Any]:
    path, size, digest, code, message = item
    return {
        "job_id": job_id,
        "item_index": index,
        "path": path,
        "size": size,
        "sha256": digest,
        "error_code": code,
        "error_message": message,
    }


def status(runtime: Runtime, job_id: str) -> dict[str, Any]:
    """The job with its counts (one GROUP BY over its result rows), throughput and ETA; not_found if unknown."""
    jobs = require(runtime)
    with database(jobs), jobs.engine.connect() as connection:
        job = connection.execute(select(Job).where(Job.id == job_id[:32])).first()
        if job is None:
            raise not_found(job_id)
        counts = row_counts(connection, [job.id])
    return describe(job, counts.get(job.id, {}))


def listing(
    runtime: Runtime, limit: int = 50, status: str | None = None, before: str | None = None
) -> list[dict[str, Any]]:
    """Jobs newest first (`status` filters, `before` is the id of the last job of the previous page)."""
    jobs = require(runtime)
    statement = select(Job)
    if status is not None:
        statement = statement.where(Job.status == status)
    with database(jobs), jobs.engine.connect() as connection:
        if before:
            anchor = connection.execute(select(Job.created_at, Job.id).where(Job.id == before[:32])).first()
            if anchor is None:
                raise not_found(before)
            statement = statement.where(
                or_(Job.created_at < anchor.created_at, and_(Job.created_at == anchor.created_at, Job.id < anchor.id))
            )
        statement = statement.order_by(Job.created_at.desc(), Job.id.desc()).limit(max(1, min(limit, MAX_LISTING)))
        found = connection.execute(statement).all()
        counts = row_counts(connection, [job.id for job in found])
    return [describe(job, counts.get(job.id, {})) for job in found]


def cancel(runtime: Runtime, job_id: str) -> dict[str, Any]:
    """queued/running → cancelled: rows already written stay, chunks not started never run, a running chunk stops
    after its current batch; a finished job is invalid_state (409)."""
    jobs = require(runtime)
    with database(jobs):
        if not finish(jobs, job_id, "cancelled"):
            current = status(runtime, job_id)  # not_found for an unknown id
            raise ServiceError(
                "invalid_state",
                f"Job {job_id} has already {current['status']}; only queued or running jobs can be cancelled.",
                {"id": job_id, "status": current["status"]},
            )
    logger.info("job {}: cancelled", job_id)
    return status(runtime, job_id)


def finish(jobs: Jobs, job_id: str, state: str, code: str | None = None, message: str | None = None) -> bool:
    """Move an active job to a final state (True), or do nothing when it has one already (False)."""
    assert state in FINISHED
    with jobs.engine.begin() as connection:
        changed = connection.execute(
            update(Job)
            .where(Job.id == job_id[:32], Job.status.in_(ACTIVE))
            .values(status=state, finished_at=utcnow(), error_code=code, error_message=message)
        )
    return changed.rowcount == 1


def row_counts(connection: Connection, job_ids: list[str]) -> dict[str, dict[str, int]]:
    """Result rows per job and status (ok, error), in one query."""
    if not job_ids:
        return {}
    counts: dict[str, dict[str, int]] = {}
    statement = (
        select(Prediction.job_id, Prediction.status, func.count())
        .where(Prediction.job_id.in_(job_ids))
        .group_by(Prediction.job_id, Prediction.status)
    )
    for job_id, state, count in connection.execute(statement):
        counts.setdefault(job_id, {})[state] = count
    return counts


def describe(job: Any, counts: dict[str, int]) -> dict[str, Any]:
    """A job row and its counts as the API's job object (throughput over the time it has run, ETA from it)."""
    done, failed = counts.get("ok", 0), counts.get("error", 0)
    pending = max(0, job.total - done - failed)
    throughput = eta = None
    if job.started_at is not None:
        elapsed = ((job.finished_at or datetime.now(UTC)) - job.started_at).total_seconds()
        if elapsed > 0 and done + failed:
            throughput = round((done + failed) / elapsed, 3)
    if job.status in ACTIVE and throughput:
        eta = round(pending / throughput, 1)
    elif job.status in ("succeeded", "failed"):
        eta = 0.0  # None: not started yet, or cancelled
    error = {"code": job.error_code, "message": job.error_message} if job.error_code else None
    return {
        "id": job.id,
        "status": job.status,
        "model": job.model,
        "version": job.version,
        "task": job.task,
        "options": job.options or {},
        "total": job.total,
        "done": done,
        "failed": failed,
        "pending": pending,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "throughput_per_s": throughput,
        "eta_s": eta,
        "name": job.name,
        "source": job.source,
        "executor": job.executor,
        "error": error,
    }


def not_found(job_id: str) -> ServiceError:
    return ServiceError("not_found", f"No job with id {job_id!r}.", {"id": job_id})
