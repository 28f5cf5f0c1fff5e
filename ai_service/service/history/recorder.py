"""Rows from predictions: built on the request thread from what is already in hand, finished (JSON, stored images)
on the writer thread."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from loguru import logger
from PIL import Image
from sqlalchemy import Engine, delete, exists, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ai_service.errors import ServiceError
from ai_service.service.upload import Caller, Upload
from ai_service.settings import HistorySettings, Settings
from ai_service.storage.blobs import BlobStore
from ai_service.storage.database import connect, safe_url
from ai_service.storage.migrate import ensure_schema
from ai_service.storage.schema import Prediction, new_id, utcnow
from ai_service.storage.writer import RowWriter

#: Result keys that are columns of their own (or a link to the row), not part of the stored result.
NOT_RESULT = frozenset({"index", "filename", "width", "height", "mode", "history_id"})
#: Result keys whose images count as the output that `history_images=outputs` keeps.
OUTPUT_KEYS = ("image", "mask")
#: Every column a finished row has (executemany needs the same keys in every row).
ROW_DEFAULTS: dict[str, Any] = {
    "job_id": None,
    "error_code": None,
    "error_message": None,
    "result": None,
    "top1_label": None,
    "top1_score": None,
    "output_sha256": None,
    "input_stored": False,
    "http_status": 200,
}
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
        now = utcnow()
        name, version, task = model
        pending = []
        for index, (upload, result) in enumerate(zip(uploads, results)):
            data = upload.data if isinstance(upload, Upload) else None
            row = {
                "id": new_id(),
                "created_at": now,
                "request_id": caller.request_id[:64],
                "source": caller.source,
                "job_id": caller.job_id,
                "item_index": result.get("index", index),
                "model": name,
                "version": version,
                "task": task,
                "input_sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
                "filename": (upload.filename if isinstance(upload, Upload) else "")[:255],
                "width": result.get("width"),
                "height": result.get("height"),
                "mode": result.get("mode"),
                "timing_ms": dict(timing_ms),  # the caller adds its encode stage to its own copy later
                "total_ms": timing_ms.get("total"),
                "batch_size": batch_size,
                "client": caller.client[:128],
            }
            keep_input = data if self.settings.images == "all" else None
            pending.append(PendingRow(row, dict(result), keep_input))
        accepted = self.writer.submit(pending)
        return [item.row["id"] for item in pending[:accepted]] + [None] * (len(pending) - accepted)

    def record_failure(
        self, caller: Caller, model: tuple[str, str, str], uploads: Sequence[Upload | ServiceError], error: ServiceError
    ) -> None:
        """A call that failed as a whole (overloaded, timeout, out of memory): one error row per input."""
        failed = {"error": error.body(), "status": error.status}
        self.record(caller, model, uploads, [{"index": i, **failed} for i in range(len(uploads))], {}, 0)

    def finish(self, pending: PendingRow) -> dict[str, Any]:
        """On the writer thread: status, the result as JSON (images stored or summarized), top-1, stored input."""
        row, result = {**ROW_DEFAULTS, **pending.row}, pending.result
        if pending.input_bytes is not None:
            self.blobs.put(pending.input_bytes, row["input_sha256"])
            row["input_stored"] = True
        else:
            row["input_stored"] = False
        if "error" in result:
            error = result["error"]
            row.update(
                status="error",
                error_code=error.get("code"),
                error_message=error.get("message"),
                http_status=result.get("status", 500),
                result=None,
            )
            return row
        row.update(status="ok", error_code=None, error_message=None, http_status=200)
        stored: list[str] = []
        body = {key: value for key, value in result.items() if key not in NOT_RESULT}
        for key, value in body.items():  # images sit at the top (image, mask) or in detections (masks)
            if isinstance(value, Image.Image):
                body[key] = self.image_reference(value, key, stored)
            elif key == "detections" and isinstance(value, list):
                body[key] = [
                    {
                        k: self.image_reference(v, k, stored) if isinstance(v, Image.Image) else v
                        for k, v in item.items()
                    }
                    if isinstance(item, dict)
                    else item
                    for item in value
                ]
        row["result"] = body
        row["output_sha256"] = stored[0] if stored else None
        row["top1_label"], row["top1_score"] = top1(result)
        return row

    def image_reference(self, image: Image.Image, key: str, stored: list[str]) -> dict[str, Any]:
        """An image in a result as {kind, width, height, mode[, sha256]}, stored as PNG when outputs are kept."""
        reference: dict[str, Any] = {"kind": "image", "width": image.width, "height": image.height, "mode": image.mode}
        if self.settings.images != "none" and key in OUTPUT_KEYS:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            reference["sha256"] = self.blobs.put(buffer.getvalue())
            stored.append(reference["sha256"])
        return reference

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
        """Stored images written before `older_than` that no row names (newer ones may belong to queued rows)."""
        removed = 0
        with self.engine.connect() as connection:
            for digest in list(self.blobs.digests(older_than)):
                used = connection.scalar(
                    select(exists().where(or_(Prediction.input_sha256 == digest, Prediction.output_sha256 == digest)))
                )
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


@dataclass
class PendingRow:
    """A row waiting for the writer: the columns known on the request thread, the raw result, the kept input."""

    row: dict[str, Any]
    result: dict[str, Any]
    input_bytes: bytes | None = None


def top1(result: dict[str, Any]) -> tuple[str | None, float | None]:
    """The best label and score of a classification (predictions) or detection (detections) result."""
    for key in ("predictions", "detections"):
        items = result.get(key)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            best = max(items, key=lambda item: item.get("score") or 0.0)
            label = best.get("label")
            return (str(label)[:255] if label is not None else None), best.get("score")
    return None, None


def open_history(settings: Settings) -> History | None:
    """Connect, bring the schema up to date (or check it), and return the process's History; None when off.

    A database that cannot be reached does not stop the service: predictions are answered, rows queue, and the
    schema step runs before the first write that gets through. A schema that is out of date while start-up may
    not upgrade it does stop it (SchemaError), since no write could succeed.
    """
    if not settings.history.enabled:
        return None
    engine = connect(settings.database_url, settings.database.pool_size)
    migrate = settings.database.migrate
    try:
        ensure_schema(engine, migrate)
        deferred = None
    except SQLAlchemyError as error:
        logger.error(
            "history: database {} unreachable at start-up ({}); predictions are served, rows queue until it is back",
            safe_url(engine),
            str(error).splitlines()[0][:200],
        )
        deferred = partial(ensure_schema, engine, migrate)
    return History(settings.history, engine, BlobStore(settings.blobs_dir), deferred)
