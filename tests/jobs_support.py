"""What the job tests share: an app or runtime on a temporary home, digit inputs, running every chunk, counting rows."""

from __future__ import annotations

from pathlib import Path

from conftest import encode
from sqlalchemy import func, select
from web_doubles import register_doubles

from ai_service import create_app
from ai_service.service import jobs
from ai_service.service.jobs.archive import JobItem
from ai_service.service.runtime import Runtime, build_runtime
from ai_service.service.upload import Caller
from ai_service.settings import load_settings
from ai_service.storage.schema import JobChunk, Prediction

CALLER = Caller("api", "req-1", "key:test")


def make_app(home: Path, **settings: object):
    """An app on `home` with the test doubles registered, quiet logs (the API and page tests of jobs)."""
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "log_to_file": False, **settings})
    register_doubles(app)
    return app


def make_runtime(home: Path, *, run_jobs: bool = True, **overrides: object) -> Runtime:
    """Chunks of 16 unless told otherwise, so small jobs still have several."""
    settings = load_settings({"home": str(home), "jobs_chunk_size": 16, **overrides})
    settings.ensure_dirs()
    return build_runtime(settings, run_jobs=run_jobs)


def digit_png(pixels, size: int = 32) -> bytes:
    from ai_service.models.builtin.digits_training import render_digit

    return encode(render_digit(pixels, size))


def digit_items(split, count: int, prefix: str = "digits") -> list[JobItem]:
    """`count` held-out digits (cycling past the end) named `<prefix>/NNNN.png`."""
    images = split.test_images
    return [JobItem(f"{prefix}/{index:04d}.png", digit_png(images[index % len(images)])) for index in range(count)]


def run_all(runtime: Runtime, job_id: str) -> None:
    """Run every chunk of the job once, in order, as an executor would."""
    with runtime.jobs.engine.connect() as connection:
        chunks = connection.execute(select(JobChunk.start, JobChunk.stop).where(JobChunk.job_id == job_id)).all()
    for start, stop in sorted(chunks):
        jobs.run_chunk(runtime, job_id, start, stop, "test:1/0")


def rows_per_item(runtime: Runtime, job_id: str) -> dict[int, int]:
    """How many result rows each item index has (exactly one each when nothing ran twice)."""
    with runtime.jobs.engine.connect() as connection:
        found = connection.execute(
            select(Prediction.item_index, func.count())
            .where(Prediction.job_id == job_id)
            .group_by(Prediction.item_index)
        ).all()
    return dict(found)
