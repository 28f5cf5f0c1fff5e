"""Bulk jobs over time: submitted and finished per bucket (the jobs table), and their images' throughput (the
history rows jobs write, source `job`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ai_service.schemas.stats import StatsQuery
from ai_service.service.history.recorder import History
from ai_service.service.stats.window import engine_of, resolve, run, series, where
from ai_service.storage.schema import Job, Prediction

FINAL_STATES = ("succeeded", "failed", "cancelled")
STATES = ("queued", "running", *FINAL_STATES)


def jobs(history: History | None, query: StatsQuery) -> dict[str, Any]:
    """Jobs submitted and finished (by final state) per bucket, job images per bucket and per second."""
    engine, window = engine_of(history), resolve(query)
    models = [Job.model.in_(window.models)] if window.models else []

    def by_status(column: Any) -> list[Any]:
        """Jobs per (bucket of `column`, status): submitted when given created_at, finished for finished_at."""
        inner = (
            select(window.bucket(column).label("bucket"), Job.status.label("status"))
            .where(column >= window.since, column < window.until, *models)
            .subquery()
        )
        query = select(inner.c.bucket, inner.c.status, func.count()).group_by(inner.c.bucket, inner.c.status)
        return run(engine, query)

    created, finished = by_status(Job.created_at), by_status(Job.finished_at)
    images_of = (
        select(window.bucket(Prediction.created_at).label("bucket"))
        .where(*where(window), Prediction.source == "job")
        .subquery()
    )
    images = series(run(engine, select(images_of.c.bucket, func.count()).group_by(images_of.c.bucket)), window.count)
    submitted = [0] * window.count
    states = dict.fromkeys(STATES, 0)
    for bucket, status, count in created:
        if 0 <= bucket < window.count:
            submitted[bucket] += count
        states[status] = states.get(status, 0) + count
    ended = {state: [0] * window.count for state in FINAL_STATES}
    for bucket, status, count in finished:
        if 0 <= bucket < window.count and status in ended:
            ended[status][bucket] += count
    return {
        "window": window.describe(),
        "buckets": window.starts(),
        "created": submitted,
        "finished": ended,
        "images": images,
        "images_per_s": [count / window.width_s for count in images],
        "states": states,
    }
