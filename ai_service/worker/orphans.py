"""Chunks the broker lost, sent again by an idle worker: the database is the truth about a job, the broker only
carries the wake-ups, so a job finishes even when a message is gone.

Messages do get lost: Redis pops a chunk (BRPOP) and records it as unacknowledged in a second command, so a Redis
crash between the two drops it; a Redis without persistence drops every queued chunk when it restarts. A worker
that runs nothing, while the queue is empty, looks every few seconds (sweep_interval_s) for chunks of active Celery
jobs that nobody touched for `stale_after_s` (pending ones sent that long ago, running ones whose owner stopped
reporting), stamps each with a compare-and-set on its heartbeat (so one worker sends it, once per period) and
publishes its task again. A chunk sent again while its first message still existed runs twice at worst; its rows
are written once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from loguru import logger
from sqlalchemy import Engine, func, select, update

from ai_service.service.jobs.core import ACTIVE
from ai_service.settings import Settings
from ai_service.storage.database import connect
from ai_service.storage.schema import Job, JobChunk, utcnow
from ai_service.worker.app import QUEUE, TASK

#: Most chunks sent again per sweep (the rest follow at the next one).
BATCH = 100


def sweep_interval_s(stale_after_s: float) -> float:
    """How often an idle worker looks: twice per staleness period, between 1 s and 30 s."""
    return max(1.0, min(30.0, stale_after_s / 2))


def orphans(engine: Engine, cutoff: datetime) -> list[Any]:
    """Chunks of active Celery jobs not done and untouched since `cutoff` (a never-started chunk: since its job
    was created), oldest job first."""
    touched = func.coalesce(JobChunk.heartbeat_at, Job.created_at)
    statement = (
        select(JobChunk.job_id, JobChunk.start, JobChunk.stop, JobChunk.state, JobChunk.heartbeat_at)
        .join(Job, Job.id == JobChunk.job_id)
        .where(Job.status.in_(ACTIVE), Job.executor == "celery", JobChunk.state.in_(("pending", "running")))
        .where(touched < cutoff)
        .order_by(Job.created_at, JobChunk.job_id, JobChunk.start)
        .limit(BATCH)
    )
    with engine.connect() as connection:
        return list(connection.execute(statement).all())


def stamp(engine: Engine, chunk: Any, now: datetime) -> bool:
    """Mark the chunk as sent now, unless someone touched it since it was read (then it is not an orphan)."""
    same = (
        JobChunk.heartbeat_at.is_(None) if chunk.heartbeat_at is None else JobChunk.heartbeat_at == chunk.heartbeat_at
    )
    with engine.begin() as connection:
        changed = connection.execute(
            update(JobChunk)
            .where(JobChunk.job_id == chunk.job_id, JobChunk.start == chunk.start, JobChunk.state == chunk.state)
            .where(same)
            .values(heartbeat_at=now)
        )
    return changed.rowcount == 1


def queue_empty(app: Celery) -> bool:
    """Whether no chunk waits in the queue: only then can a pending chunk untouched for long be lost rather than
    waiting its turn. Declaring the queue (idempotent) answers on Redis and RabbitMQ alike; raises when the broker
    is down."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        with connection.channel() as channel:
            return app.amqp.queues[QUEUE].bind(channel).queue_declare().message_count == 0


def sweep(engine: Engine, app: Celery, stale_after_s: float) -> int:
    """Send every orphaned chunk's task again, when the queue is empty; returns how many were sent."""
    if not queue_empty(app):
        return 0
    now = utcnow()
    sent = 0
    for chunk in orphans(engine, now - timedelta(seconds=stale_after_s)):
        if stamp(engine, chunk, now):
            app.send_task(TASK, args=(chunk.job_id, chunk.start, chunk.stop), queue=QUEUE, routing_key=QUEUE)
            logger.warning(
                "job {}: chunk {} ({}, untouched for over {:g}s) was lost by the broker; sent again",
                chunk.job_id,
                chunk.start,
                chunk.state,
                stale_after_s,
            )
            sent += 1
    return sent


class Sweeper:
    """A thread of the worker's main process that sweeps while the worker runs no chunk."""

    def __init__(self, app: Celery, settings: Settings, idle: Callable[[], bool]) -> None:
        self.app, self.idle = app, idle
        self.stale_after_s = settings.jobs.stale_after_s
        self.interval_s = sweep_interval_s(self.stale_after_s)
        self.engine = connect(settings.database_url, pool_size=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs-orphans", daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.idle():
                continue
            try:
                sweep(self.engine, self.app, self.stale_after_s)
            except Exception as error:  # noqa: BLE001 - database or broker down: the next sweep tries again
                logger.warning("jobs: looking for lost chunks failed ({}: {})", type(error).__name__, error)
            finally:
                self.engine.dispose()  # nothing stays open between sweeps, nor across a prefork child's fork
