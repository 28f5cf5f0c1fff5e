"""The history as pandas DataFrames for analysts: rows chosen in SQL (time range, models, statuses), the newest
`limit` of them with the export's column types, and the aggregates the Streamlit app charts, computed with pandas.

The same SELECT runs on SQLite, MariaDB and PostgreSQL; the CSV is the one GET /api/v1/history/export writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import ColumnElement, Engine, select

from ai_service.imaging.encode import preview_data_url
from ai_service.imaging.errors import ImageDecodeError
from ai_service.service.history.export import csv_stream, frame
from ai_service.service.history.query import COLUMNS, NEWEST_FIRST, utc
from ai_service.storage.blobs import BlobStore
from ai_service.storage.schema import Prediction

#: Quantiles of `total_ms` the latency chart draws.
LATENCY_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
#: Bucket widths by the span they suit: about 30 to 300 buckets whatever the time range.
BUCKETS = ((timedelta(hours=2), "1min"), (timedelta(hours=12), "5min"), (timedelta(days=8), "1h"))
#: Side of the table's thumbnails (px).
THUMBNAIL_SIDE = 96


@dataclass(frozen=True)
class Selection:
    """Which rows to read: every filter is optional and they combine (AND)."""

    #: Oldest time included, and the time before which rows stop (no offset: UTC).
    since: datetime | None = None
    until: datetime | None = None
    #: Model names, any version; empty: every model.
    models: tuple[str, ...] = ()
    #: ok and/or error; empty: both.
    statuses: tuple[str, ...] = ()
    #: The newest rows read at most: the charts and the table cover these, so a million rows never load.
    limit: int = 20_000


def conditions(selection: Selection) -> list[ColumnElement[bool]]:
    """The WHERE clauses of the filters that are set."""
    found: list[ColumnElement[bool]] = []
    if selection.since is not None:
        found.append(Prediction.created_at >= utc(selection.since))
    if selection.until is not None:
        found.append(Prediction.created_at < utc(selection.until))
    if selection.models:
        found.append(Prediction.model.in_(selection.models))
    if selection.statuses:
        found.append(Prediction.status.in_(selection.statuses))
    return found


def model_names(engine: Engine) -> list[str]:
    """Every model name the history holds rows of, for the model filter."""
    with engine.connect() as connection:
        return list(connection.scalars(select(Prediction.model).distinct().order_by(Prediction.model)))


def load(engine: Engine, selection: Selection) -> pd.DataFrame:
    """The newest `selection.limit` matching rows, newest first, every column with the export's dtype."""
    table = Prediction.__table__
    columns = [table.c[name] for name in COLUMNS]  # type: ignore[attr-defined]
    statement = select(*columns).where(*conditions(selection)).order_by(*NEWEST_FIRST).limit(selection.limit)
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    return frame(list(rows))


def bucket(since: datetime | None, until: datetime | None, rows: pd.DataFrame) -> str:
    """The pandas frequency of the time charts: from the chosen range, or the rows' own span when open-ended."""
    if since is None and not rows.empty:
        since = rows["created_at"].min().to_pydatetime()
    if until is None:
        until = datetime.now(UTC) if rows.empty else rows["created_at"].max().to_pydatetime()
    span = utc(until) - utc(since) if since is not None else timedelta(0)
    return next((freq for limit, freq in BUCKETS if span <= limit), "1D")


def traffic(rows: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Images per time bucket, one column per status (ok, error)."""
    if rows.empty:
        return pd.DataFrame(columns=["ok", "error"], dtype="int64")
    counts = rows.groupby([pd.Grouper(key="created_at", freq=freq), "status"]).size().unstack(fill_value=0)
    return counts.reindex(columns=["ok", "error"], fill_value=0).astype("int64")


def latency(rows: pd.DataFrame, freq: str) -> pd.DataFrame:
    """p50/p95/p99 of the total milliseconds per time bucket (images that produced a timing only)."""
    timed = rows.dropna(subset=["total_ms"])
    if timed.empty:
        return pd.DataFrame(columns=list(LATENCY_QUANTILES), dtype="float64")
    grouped = timed.groupby(pd.Grouper(key="created_at", freq=freq))["total_ms"]
    found = pd.DataFrame({name: grouped.quantile(q) for name, q in LATENCY_QUANTILES.items()})
    return found.dropna(how="all")


def error_codes(rows: pd.DataFrame) -> pd.Series:
    """Images per error code, most frequent first."""
    return rows.loc[rows["status"] == "error", "error_code"].fillna("(none)").value_counts().rename("images")


def top_labels(rows: pd.DataFrame, count: int = 15) -> pd.DataFrame:
    """The most frequent best labels: one row per label, one column per model."""
    labelled = rows.dropna(subset=["top1_label"])
    if labelled.empty:
        return pd.DataFrame()
    table = labelled.groupby(["top1_label", "model"]).size().unstack(fill_value=0)
    return table.loc[table.sum(axis=1).sort_values(ascending=False).index[:count]]


def score_histogram(rows: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Images per band of best score ([0, 0.1), ..., [0.9, 1.0]), one column per model: drift shows as a shift."""
    scored = rows.dropna(subset=["top1_score"])
    edges = [index / bins for index in range(bins + 1)]
    names = [f"{low:.1f}–{high:.1f}" for low, high in zip(edges, edges[1:])]
    if scored.empty:
        return pd.DataFrame(index=pd.Index(names, name="score"))
    bands = pd.cut(scored["top1_score"].clip(0, 1), edges, labels=names, include_lowest=True, right=False)
    bands = bands.where(scored["top1_score"] < 1, names[-1])  # a score of exactly 1 belongs to the last band
    table = scored.assign(score=bands).groupby(["score", "model"], observed=False).size().unstack(fill_value=0)
    return table.reindex(names, fill_value=0).rename_axis("score")


def earlier(selection: Selection, now: datetime) -> Selection | None:
    """The period of the same length just before the selection's (None for an open-ended range): the baseline of
    the drift comparison."""
    if selection.since is None:
        return None
    since, until = utc(selection.since), utc(selection.until or now)
    return replace(selection, since=since - (until - since), until=since)


def score_shares(current: pd.DataFrame, before: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Each model's share of scored images per score band, this period's column beside the period before's: shares,
    not counts, so that a busier week does not look like a shift."""
    columns: dict[str, pd.Series] = {}
    for when, rows in (("now", current), ("before", before)):
        counts = score_histogram(rows, bins)
        for model in counts.columns:
            columns[f"{model} ({when})"] = counts[model] / counts[model].sum()
    index = score_histogram(current.iloc[:0], bins).index
    return pd.DataFrame(columns, index=index)[sorted(columns)]


def csv_bytes(rows: pd.DataFrame) -> bytes:
    """The rows as the history export's CSV (read back with export.csv_read_options())."""
    return b"".join(csv_stream(iter([rows])))


def thumbnails(rows: pd.DataFrame, blobs: BlobStore, max_pixels: int, which: str, count: int) -> list[str | None]:
    """PNG data URLs of the stored input or output images of the first `count` rows (None where none is kept)."""
    found: list[str | None] = []
    for position, row in enumerate(rows.itertuples(index=False)):
        digest = (row.input_sha256 if row.input_stored else None) if which == "input" else row.output_sha256
        data = blobs.get(digest) if position < count and isinstance(digest, str) else None
        found.append(_preview(data, max_pixels) if data is not None else None)
    return found


def _preview(data: bytes, max_pixels: int) -> str | None:
    """A thumbnail, or None for bytes that no longer decode (a format support was removed for)."""
    try:
        return preview_data_url(data, max_pixels, THUMBNAIL_SIDE)
    except ImageDecodeError:
        return None


def summary(rows: pd.DataFrame) -> dict[str, float | int | None]:
    """The headline numbers: images, error share, latency percentiles."""
    timed = rows["total_ms"].dropna()
    return {
        "images": len(rows),
        "error_rate": float((rows["status"] == "error").mean()) if len(rows) else None,
        **{name: float(timed.quantile(q)) if len(timed) else None for name, q in LATENCY_QUANTILES.items()},
    }
