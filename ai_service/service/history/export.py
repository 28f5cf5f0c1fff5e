"""History exports through pandas: CSV, JSON lines or Parquet, streamed chunk by chunk, oldest row first.

Rows are read in keyset chunks of `CHUNK_ROWS` (one short query per chunk, no transaction held open while a client
downloads), each chunk becomes a DataFrame with the fixed dtypes of `DTYPES`, and each is written out before the next
is read: a million rows never sit in memory. The export covers rows up to the moment it started, so a busy server
cannot make it run forever. Every format has the same columns in the same order (`COLUMNS` of query.py); `result`
and `timing_ms` are JSON text; times are ISO 8601 UTC in CSV and JSON lines, `timestamp[us, tz=UTC]` in Parquet.

Reading a CSV back with the same types: `pandas.read_csv(path, **csv_read_options())`; Parquet keeps them itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Row, select

from ai_service.schemas import HistoryFilters
from ai_service.service.history.query import COLUMNS, beyond, conditions, reading, require, utc
from ai_service.service.history.recorder import History
from ai_service.storage.schema import Prediction

Format = Literal["csv", "jsonl", "parquet"]
#: Rows per database query, DataFrame and Parquet row group.
CHUNK_ROWS = 5000
#: Content types of the formats (Parquet's is registered with IANA since 2024).
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
#: File name extensions of the formats.
EXTENSIONS: dict[str, str] = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
#: Columns stored as JSON that the exports carry as JSON text.
JSON_COLUMNS = frozenset({"result", "timing_ms"})
INTEGER_COLUMNS = frozenset({"item_index", "width", "height", "http_status", "batch_size"})
FLOAT_COLUMNS = frozenset({"top1_score", "total_ms"})
BOOLEAN_COLUMNS = frozenset({"input_stored"})
TIME_COLUMNS = frozenset({"created_at"})
#: Columns that may be null (the rest are "" at worst), so that a CSV reader can tell null from "".
NULLABLE = frozenset(column.name for column in Prediction.__table__.columns if column.nullable)  # type: ignore[attr-defined]


def pandas_dtype(column: str) -> str:
    """The one pandas dtype a column has in every chunk (nullable where the database allows null)."""
    if column in TIME_COLUMNS:
        return "datetime64[us, UTC]"
    if column in INTEGER_COLUMNS:
        return "Int64"
    if column in FLOAT_COLUMNS:
        return "float64"
    if column in BOOLEAN_COLUMNS:
        return "boolean"
    return "string"


def arrow_type(column: str) -> pa.DataType:
    """The Parquet type of a column."""
    dtype = pandas_dtype(column)
    return {
        "datetime64[us, UTC]": pa.timestamp("us", tz="UTC"),
        "Int64": pa.int64(),
        "float64": pa.float64(),
        "boolean": pa.bool_(),
    }.get(dtype, pa.string())


def arrow_schema(columns: Sequence[str], nullable: Collection[str]) -> pa.Schema:
    """The Parquet schema of an export with these columns (other exports, e.g. a job's results, add columns)."""
    return pa.schema([pa.field(column, arrow_type(column), nullable=column in nullable) for column in columns])


DTYPES: dict[str, str] = {column: pandas_dtype(column) for column in COLUMNS}
ARROW_SCHEMA = arrow_schema(COLUMNS, NULLABLE)


def csv_read_options(columns: Sequence[str] = COLUMNS, nullable: Collection[str] = NULLABLE) -> dict[str, Any]:
    """`pandas.read_csv` arguments that give back the export's dtypes (and keep "" apart from null)."""
    return {
        "dtype": {column: pandas_dtype(column) for column in columns if column not in TIME_COLUMNS},
        "parse_dates": sorted(TIME_COLUMNS & set(columns)),
        "keep_default_na": False,
        "na_values": {column: [""] for column in columns if column in nullable},
    }


def export(history: History | None, filters: HistoryFilters, fmt: Format) -> Iterator[bytes]:
    """The export as a stream of byte chunks; history_disabled, and unavailable when the database cannot be read,
    are raised here, before the first byte, so that an HTTP caller can still answer with an error status."""
    history = require(history)
    started = datetime.now(UTC)
    chunks = frames(history, filters, started)
    first = next(chunks)  # reads the first chunk now: a database that is down fails the request, not the download
    writers = {"csv": csv_stream, "jsonl": jsonl_stream, "parquet": parquet_stream}
    return writers[fmt](chain_first(first, chunks))


def write_export(history: History | None, filters: HistoryFilters, fmt: Format, path: Path) -> int:
    """Write the export to `path` (the CLI), through a temporary file so a failure leaves no half file; bytes."""
    stream = export(history, filters, fmt)
    partial = path.with_name(path.name + ".partial")
    written = 0
    try:
        with open(partial, "wb") as sink:
            for data in stream:
                sink.write(data)
                written += len(data)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return written


def frames(history: History, filters: HistoryFilters, started: datetime) -> Iterator[pd.DataFrame]:
    """Chunks of rows as DataFrames, oldest first; always yields at least one (maybe empty) frame."""
    where = conditions(filters)
    if filters.until is None or utc(filters.until) > started:
        where.append(Prediction.created_at <= started)  # a snapshot: rows recorded during the export are left out
    table = Prediction.__table__
    columns = [table.c[name] for name in COLUMNS]  # type: ignore[attr-defined]
    after: tuple[datetime, str] | None = None
    while True:
        statement = select(*columns).where(*where)
        if after is not None:
            moment, row_id = after
            statement = statement.where(beyond(moment, row_id, newest_first=False))
        statement = statement.order_by(Prediction.created_at, Prediction.id).limit(CHUNK_ROWS)
        with reading(), history.engine.connect() as connection:
            rows = connection.execute(statement).all()
        yield frame(rows)
        if len(rows) < CHUNK_ROWS:
            return
        last = rows[-1]
        after = (last.created_at, last.id)


def frame(rows: list[Row[Any]], columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    """Rows as a DataFrame with the fixed dtypes (JSON columns as compact JSON text, UTF-8 unescaped)."""
    data: dict[str, pd.Series] = {}
    for index, column in enumerate(columns):
        values = [row[index] for row in rows]
        if column in JSON_COLUMNS:
            values = [None if value is None else orjson.dumps(value).decode() for value in values]
        data[column] = pd.Series(values, dtype=pandas_dtype(column))
    return pd.DataFrame(data, columns=list(columns))


def chain_first(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield first
    yield from rest


def iso_times(chunk: pd.DataFrame) -> pd.DataFrame:
    """Times as ISO 8601 UTC text (microseconds, `Z`), for the text formats."""
    chunk = chunk.copy()
    for column in TIME_COLUMNS & set(chunk.columns):
        chunk[column] = chunk[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").astype("string")
    return chunk


def csv_stream(chunks: Iterator[pd.DataFrame]) -> Iterator[bytes]:
    """RFC 4180 CSV, UTF-8, the header once (an empty export is the header alone)."""
    for number, chunk in enumerate(chunks):
        yield iso_times(chunk).to_csv(index=False, header=number == 0, lineterminator="\r\n").encode("utf-8")


def jsonl_stream(chunks: Iterator[pd.DataFrame]) -> Iterator[bytes]:
    """One JSON object per line with every column (null where empty); floats keep every digit."""
    for chunk in chunks:
        if chunk.empty:
            continue
        text = iso_times(chunk).astype(object)
        records = text.where(text.notna(), None).to_dict("records")
        yield b"".join(orjson.dumps(record) + b"\n" for record in records)


class DrainedSink:
    """A write-only file for pyarrow that hands over what was written since the last drain (and knows its offset,
    which Parquet's footer needs)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def parquet_stream(chunks: Iterator[pd.DataFrame], schema: pa.Schema = ARROW_SCHEMA) -> Iterator[bytes]:
    """Parquet with the fixed schema, one row group per chunk, each sent as soon as it is written."""
    sink = DrainedSink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    try:
        for chunk in chunks:
            if not chunk.empty:
                writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
                yield sink.drain()
    finally:
        writer.close()
    yield sink.drain()


def filename(fmt: Format, moment: datetime | None = None) -> str:
    """history-20250102T030405Z.csv: dated, so repeated exports never overwrite each other in Downloads."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return f"history-{moment:%Y%m%dT%H%M%SZ}.{EXTENSIONS[fmt]}"
