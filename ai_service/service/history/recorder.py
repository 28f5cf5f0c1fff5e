"""The history of one process: rows from predictions (rows.py) queued to a background writer, retention, reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger
from sqlalchemy import Engine, delete, exists, or_, select
from sqlalchemy.orm import Session

from ai_service.errors import ServiceError
from ai_service.service.history.rows import PendingRow, failure_results, finish_row, pending_rows
from ai_service.service.upload import Caller, Upload
from ai_service.settings import HistorySettings, Settings
from ai_service.storage.blobs import BlobStore
from ai_service.storage.migrate import open_current
from ai_service.storage.schema import JobInput, Prediction
from ai_service.storage.writer import RowWriter

#: Rows deleted per transaction by the retention clean-up (keeps locks short).
PRUNE_CHUNK = 5000


@dataclass
class History:
    """The history of one process: database engine, background writer, image store and what to keep."""

    settings: HistorySettings
    engine: Engine
    blobs: BlobStore
    #: Brings the schema up to date before the first write, when the database was unreachable at start-up.
    setup: Callable[[], None] | None = None
    writer: RowWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = RowWriter(
            self.engine,
            Prediction.__table__,  # type: ignore[arg-type]
            queue_size=self.settings.queue_size,
            batch_size=self.settings.batch_size,
            flush_s=self.settings.flush_ms / 1000.0,
            prepare=self.finish,
            maintenance=self.prune if self.settings.days else None,
            setup=self.setup,
        )

    def record(
        self,
        caller: Caller,
        model: tuple[str, str, str],
        uploads: Sequence[Upload | ServiceError],
        results: Sequence[dict[str, Any]],
        timing_ms: dict[str, float],
        batch_size: int,
    ) -> list[str | None]:
        """Queue one row per input; returns each row's id (None where the queue was full and it was dropped)."""
        pending = pending_rows(
            caller, model, uploads, results, timing_ms, batch_size, keep_inputs=self.settings.images == "all"
        )
        accepted = self.writer.submit(pending)
        return [item.row["id"] for item in pending[:accepted]] + [None] * (len(pending) - accepted)

    def record_failure(
        self, caller: Caller, model: tuple[str, str, str], uploads: Sequence[Upload | ServiceError], error: ServiceError
    ) -> None:
        """A call that failed as a whole (overloaded, timeout, out of memory): one error row per input."""
        self.record(caller, model, uploads, failure_results(len(uploads), error), {}, 0)

    def finish(self, pending: PendingRow) -> dict[str, Any]:
        """On the writer thread: the row as stored, output images kept when `history_images` says so."""
        return finish_row(pending, self.blobs if self.settings.images != "none" else None)

    def prune(self) -> int:
        """Delete rows older than `days`, then stored images no row refers to; returns the rows deleted."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.days)
        deleted = 0
        while True:
            with self.engine.begin() as connection:
                ids = connection.scalars(
                    select(Prediction.id).where(Prediction.created_at < cutoff).limit(PRUNE_CHUNK)
                ).all()
                if not ids:
                    break
                connection.execute(delete(Prediction).where(Prediction.id.in_(ids)))
                deleted += len(ids)
        removed = self.remove_unreferenced(cutoff.timestamp())
        if deleted or removed:
            logger.info(
                "history: retention removed {} rows and {} stored images older than {:g} days",
                deleted,
                removed,
                self.settings.days,
            )
        return deleted

    def remove_unreferenced(self, older_than: float) -> int:
        """Stored images written before `older_than` that no row names (newer ones may belong to queued rows), nor
        a job input (AI_SERVICE_JOBS_STORE may be this same folder)."""
        removed = 0
        with self.engine.connect() as connection:
            for digest in list(self.blobs.digests(older_than)):
                used = connection.scalar(
                    select(exists().where(or_(Prediction.input_sha256 == digest, Prediction.output_sha256 == digest)))
                ) or connection.scalar(select(exists().where(JobInput.sha256 == digest)))
                if not used:
                    self.blobs.delete(digest)
                    removed += 1
        return removed

    def session(self) -> Session:
        """A read session; rows stay usable after it closes (no expiry on commit)."""
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Flush the queue (graceful shutdown) and release the connections."""
        self.writer.close()
        self.engine.dispose()


def open_history(settings: Settings) -> History | None:
    """Connect, bring the schema up to date (or check it), and return the process's History; None when off.

    A database that cannot be reached does not stop the service: predictions are answered, rows queue, and the
    schema step runs before the first write that gets through. A schema that is out of date while start-up may
    not upgrade it does stop it (SchemaError), since no write could succeed.
    """
    if not settings.history.enabled:
        return None
    engine, deferred = open_current(
        settings.database_url,
        settings.database.pool_size,
        settings.database.migrate,
        "history",
        "predictions are served, rows queue until it is back",
    )
    return History(settings.history, engine, BlobStore(settings.blobs_dir), deferred)
