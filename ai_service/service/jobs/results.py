"""A job's results as one line per input in input order (CSV, JSON lines, Parquet, through the history export's
machinery), and its output images as a zip streamed member by member."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd
from PIL import Image
from sqlalchemy import and_, select

from ai_service.service.history.export import (
    CHUNK_ROWS,
    DrainedSink,
    Format,
    arrow_schema,
    chain_first,
    csv_stream,
    frame,
    jsonl_stream,
    parquet_stream,
)
from ai_service.service.history.query import COLUMNS
from ai_service.service.jobs.core import Jobs, database, require
from ai_service.service.jobs.options import validated
from ai_service.service.jobs.service import status
from ai_service.service.outputs import encode_output
from ai_service.storage.schema import JobInput, Prediction

if TYPE_CHECKING:
    from ai_service.service.runtime import Runtime

#: The columns of a job's results: the input's archive path, then a history row's columns.
JOB_COLUMNS: tuple[str, ...] = ("path", *COLUMNS)
#: Every column may be empty for an input that has no row yet, except these.
JOB_NULLABLE = frozenset(JOB_COLUMNS) - {"path", "item_index", "status", "job_id"}
JOB_SCHEMA = arrow_schema(JOB_COLUMNS, JOB_NULLABLE)
#: File name extensions of the output formats.
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def results(runtime: Runtime, job_id: str, fmt: Format) -> Iterator[bytes]:
    """The results as a stream of byte chunks; not_found and unavailable are raised before the first byte.

    An input without a row yet has status `pending` (`cancelled` in a cancelled job) and empty row columns.
    """
    jobs = require(runtime)
    job = status(runtime, job_id)
    fill = "cancelled" if job["status"] == "cancelled" else "pending"
    chunks = frames(jobs, job["id"], fill)
    with database(jobs):
        first = next(chunks)  # the database is read now: a failure is an error status, not a broken download
    if fmt == "parquet":
        return parquet_stream(chain_first(first, chunks), JOB_SCHEMA)
    return {"csv": csv_stream, "jsonl": jsonl_stream}[fmt](chain_first(first, chunks))


def result_rows(jobs: Jobs, job_id: str, after: int, limit: int, outputs_only: bool = False) -> list[Any]:
    """Inputs after item `after` with their rows (outer join: an input without a row has empty columns)."""
    table = Prediction.__table__
    columns = [
        JobInput.path if name == "path" else JobInput.item_index if name == "item_index" else table.c[name]  # type: ignore[attr-defined]
        for name in JOB_COLUMNS
    ]
    join = and_(table.c.job_id == JobInput.job_id, table.c.item_index == JobInput.item_index)  # type: ignore[attr-defined]
    statement = select(*columns).select_from(JobInput).outerjoin(table, join)
    statement = statement.where(JobInput.job_id == job_id, JobInput.item_index > after)
    if outputs_only:
        statement = statement.where(table.c.output_sha256.is_not(None))  # type: ignore[attr-defined]
    with jobs.engine.connect() as connection:
        return list(connection.execute(statement.order_by(JobInput.item_index).limit(limit)).all())


def frames(jobs: Jobs, job_id: str, fill: str) -> Iterator[pd.DataFrame]:
    """Chunks of CHUNK_ROWS inputs as DataFrames in input order; at least one (maybe empty) frame."""
    after = -1
    while True:
        rows = result_rows(jobs, job_id, after, CHUNK_ROWS)
        chunk = frame(rows, JOB_COLUMNS)
        chunk["status"] = chunk["status"].fillna(fill)
        chunk["job_id"] = chunk["job_id"].fillna(job_id)
        yield chunk
        if len(rows) < CHUNK_ROWS:
            return
        after = rows[-1].item_index


def member_name(path: str, index: int, extension: str, taken: set[str]) -> str:
    """The output's name in the zip: the input's path with the output's extension (never absolute, no `..`)."""
    parts = [
        re.sub(r"[\x00-\x1f\\:]+", "_", part) for part in PurePosixPath(path).parts if part not in ("/", "..", ".")
    ]
    stem = str(PurePosixPath(*parts).with_suffix("")) if parts and parts[-1] else ""
    name = f"{stem or f'{index:06d}'}.{extension}"
    if name in taken:
        name = f"{stem or 'image'}-{index}.{extension}"
    taken.add(name)
    return name


def outputs_zip(runtime: Runtime, job_id: str) -> Iterator[bytes]:
    """A zip of the job's output images (image-to-image, masks) named after their inputs, streamed."""
    jobs = require(runtime)
    job = status(runtime, job_id)
    options = validated(job["options"])
    fmt = options.output_format
    with database(jobs):
        first = result_rows(jobs, job["id"], -1, CHUNK_ROWS, outputs_only=True)
    return zip_stream(jobs, job["id"], first, options, EXTENSIONS.get(fmt, "png"))


def zip_stream(jobs: Jobs, job_id: str, first: list[Any], options: Any, extension: str) -> Iterator[bytes]:
    """Members stored as they are read (PNG and JPEG do not compress further), sent as each is written."""
    sink = DrainedSink()
    taken: set[str] = set()
    reencode = options.output_format != "png" or bool(options.background)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        rows = first
        while rows:
            for row in rows:
                data = jobs.store.get(row.output_sha256)
                if data is None:
                    continue
                if reencode:
                    with Image.open(io.BytesIO(data)) as image:
                        data = encode_output(image, options)
                archive.writestr(member_name(row.path, row.item_index, extension, taken), data)
                yield sink.drain()
            if len(rows) < CHUNK_ROWS:
                break
            rows = result_rows(jobs, job_id, rows[-1].item_index, CHUNK_ROWS, outputs_only=True)
    yield sink.drain()
