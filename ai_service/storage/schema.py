"""The tables, as typed SQLAlchemy models; migrations/ creates them (a test checks the two agree)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Double, Index, Integer, String, Text, TypeDecorator
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


def new_id() -> str:
    """A time-ordered id made by the process that records the row (48-bit ms clock + 80 random bits, hex), so the
    response can name the row before it is written and a retried INSERT can never write it twice."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


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
        Index("ix_predictions_status", "status", "created_at"),
        Index("ix_predictions_source", "source", "created_at"),
        Index("ix_predictions_request", "request_id"),
        Index("ix_predictions_input", "input_sha256"),
        Index("ix_predictions_output", "output_sha256"),
        Index("ix_predictions_job", "job_id", "item_index"),
    )
