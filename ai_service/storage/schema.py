"""The tables, as typed SQLAlchemy models; migrations/ creates them (a test checks the two agree)."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Double, Index, Integer, LargeBinary, String, Text, TypeDecorator
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Timestamps stored as naive UTC with microseconds on every backend, read back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


#: JSON text as written on every backend: PostgreSQL's JSONB would reorder keys, and the history gives back what
#: the API answered (nothing queries inside these columns).
JSONValue = JSON(none_as_null=True)


#: The random half of ids: a generator of this module's own (nobody's random.seed() touches it), seeded from the OS
#: once per process and again in every forked child. os.urandom per id released the GIL on each call: under load
#: each re-take was a thread hand-off, 1.3% of a digits worker's samples for 80 bits.
_ID_BITS = random.Random()
os.register_at_fork(after_in_child=_ID_BITS.seed)


def new_id() -> str:
    """A time-ordered id made by the process that records the row (48-bit ms clock + 80 random bits, hex), so the
    response can name the row before it is written and a retried INSERT can never write it twice."""
    return f"{int(time.time() * 1000):012x}{_ID_BITS.getrandbits(80):020x}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Every table of the service."""


class Prediction(Base):
    """One input image of one predict call: what it was, which model said what about it, how fast, for whom."""

    __tablename__ = "predictions"

    #: Time-ordered hex id (see new_id).
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str] = mapped_column(String(64), default="")
    #: api, web, job or cli.
    source: Mapped[str] = mapped_column(String(16))
    #: The bulk job this row belongs to (none for interactive calls).
    job_id: Mapped[str | None] = mapped_column(String(32))
    #: Position of the image in its request (or job).
    item_index: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64), default="")
    task: Mapped[str] = mapped_column(String(32), default="")
    #: sha256 of the uploaded bytes (none when the input was rejected before it had bytes, e.g. bad base64).
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255), default="")
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str | None] = mapped_column(String(16))
    #: ok or error.
    status: Mapped[str] = mapped_column(String(8))
    #: The error code (ERRORS table) and the HTTP status this image alone would have had.
    error_code: Mapped[str | None] = mapped_column(String(64))
    http_status: Mapped[int] = mapped_column(Integer, default=200)
    error_message: Mapped[str | None] = mapped_column(Text)
    #: The model's result as the API answered it, images replaced by references to the store.
    result: Mapped[Any | None] = mapped_column(JSONValue)
    #: Best label and its score, for filters and flat exports (classification and detection).
    top1_label: Mapped[str | None] = mapped_column(String(255))
    top1_score: Mapped[float | None] = mapped_column(Double)  # Float is 4-byte FLOAT on MySQL
    #: Milliseconds per stage (decode, preprocess, queue, forward, postprocess, load) and total.
    timing_ms: Mapped[Any | None] = mapped_column(JSONValue)
    total_ms: Mapped[float | None] = mapped_column(Double)
    #: Images that went through the network together with this one (0: it never reached the network).
    batch_size: Mapped[int] = mapped_column(Integer, default=0)
    #: Who asked: "key:<fingerprint>" for an API key, "ip:<address>" otherwise, or the CLI user; never a secret.
    client: Mapped[str] = mapped_column(String(128), default="")
    #: The input is in the image store (AI_SERVICE_HISTORY_IMAGES=all).
    input_stored: Mapped[bool] = mapped_column(Boolean, default=False)
    #: sha256 of the stored output image (image-to-image, segmentation masks), when outputs are kept.
    output_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_predictions_created", "created_at", "id"),
        Index("ix_predictions_model", "model", "version", "created_at"),
        #: The dashboard's model-filtered time ranges (any version).
        Index("ix_predictions_model_created", "model", "created_at"),
        Index("ix_predictions_status", "status", "created_at"),
        Index("ix_predictions_source", "source", "created_at"),
        Index("ix_predictions_request", "request_id"),
        Index("ix_predictions_input", "input_sha256"),
        Index("ix_predictions_output", "output_sha256"),
        #: A job's result for an item is written once, however often its chunk is delivered (NULLs are distinct).
        Index("uq_predictions_job_item", "job_id", "item_index", unique=True),
    )


#: Bytes of any size on every backend (MySQL's BLOB stops at 64 KiB).
Bytes = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


class Job(Base):
    """A bulk job: many inputs through one model with one set of options, run chunk by chunk."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: queued, running, succeeded, failed or cancelled.
    status: Mapped[str] = mapped_column(String(16))
    #: The model as the client named it, and what it resolved to when the job was accepted.
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64), default="")
    task: Mapped[str] = mapped_column(String(32), default="")
    #: The per-request options (top_k, return, ...) every item runs with, as the API validated them.
    options: Mapped[Any | None] = mapped_column(JSONValue)
    total: Mapped[int] = mapped_column(Integer)
    chunk_size: Mapped[int] = mapped_column(Integer)
    #: api, web or cli; who asked (as in predictions.client).
    source: Mapped[str] = mapped_column(String(16), default="api")
    client: Mapped[str] = mapped_column(String(128), default="")
    #: local or celery: who runs the chunks.
    executor: Mapped[str] = mapped_column(String(16), default="local")
    #: What the client uploaded (an archive's name, "files" or "json"), for lists.
    name: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Why a job failed as a whole (error table code and message).
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status", "status", "created_at"),
        Index("ix_jobs_finished", "finished_at"),  # the dashboard's jobs finished per bucket
    )


class JobInput(Base):
    """One input of a job: its place, its path in the archive, and its bytes by sha256 (in the job store)."""

    __tablename__ = "job_inputs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The member path in the archive, or the uploaded file's name.
    path: Mapped[str] = mapped_column(String(1024), default="")
    size: Mapped[int] = mapped_column(Integer, default=0)
    #: The bytes in the job store (none when the input was refused before it had bytes).
    sha256: Mapped[str | None] = mapped_column(String(64))
    #: Why the input was refused when the job was accepted (it becomes this item's error row).
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    #: Retention asks whether any input still names a stored blob.
    __table_args__ = (Index("ix_job_inputs_sha256", "sha256"),)


class JobChunk(Base):
    """A run of consecutive inputs [start, stop) that one worker takes, with who holds it and since when."""

    __tablename__ = "job_chunks"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    start: Mapped[int] = mapped_column(Integer, primary_key=True)
    stop: Mapped[int] = mapped_column(Integer)
    #: pending, running or done.
    state: Mapped[str] = mapped_column(String(16), default="pending")
    #: host:pid of the process running it.
    owner: Mapped[str | None] = mapped_column(String(128))
    #: Last sign of life of its owner (a stale one is taken over).
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_job_chunks_state", "state", "heartbeat_at"),)


class Blob(Base):
    """Bytes by sha256 in the database: the default job store, readable by every machine that reaches it."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(Bytes)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
