"""The prediction history for analysts, as a Streamlit app (`ai-service dashboard --streamlit`, the `streamlit` extra).

Streamlit runs this file as a script on every interaction: filters in the sidebar, headline numbers, charts, the
rows with thumbnails of their stored images, and the rows as CSV. It reads the database and the image store the
settings name (AI_SERVICE_* variables, AI_SERVICE_CONFIG, AI_SERVICE_HOME), read-only: it never migrates or writes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ai_service.frontends import history_frame as history
from ai_service.service.history.export import filename
from ai_service.settings import load_settings
from ai_service.storage.blobs import BlobStore
from ai_service.storage.database import connect, safe_url

#: The time ranges the sidebar offers (None: every row; "custom": the date picker).
PERIODS: dict[str, timedelta | str | None] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Everything": None,
    "Dates…": "custom",
}
#: Rows of the table that get thumbnails (each is a decode and a PNG encode on every rerun).
IMAGE_ROWS = 100
#: The table's columns, in order (the CSV has every column).
TABLE_COLUMNS = (
    "created_at",
    "model",
    "version",
    "status",
    "top1_label",
    "top1_score",
    "total_ms",
    "error_code",
    "filename",
    "width",
    "height",
    "source",
    "id",
)


@st.cache_resource
def database(url: str) -> Engine:
    """One engine (connection pool) per database URL for every session of this process."""
    return connect(url)


def chosen_range(now: datetime) -> tuple[datetime | None, datetime | None]:
    """The sidebar's time range as (since, until) in UTC."""
    period = PERIODS[st.sidebar.selectbox("Time range", list(PERIODS), index=2)]
    if period == "custom":
        picked = st.sidebar.date_input("Dates (UTC)", value=(now.date() - timedelta(days=7), now.date()))
        days = [day for day in (picked if isinstance(picked, tuple) else (picked,)) if isinstance(day, date)]
        if not days:
            return None, None
        return datetime.combine(days[0], time(), UTC), datetime.combine(days[-1] + timedelta(days=1), time(), UTC)
    return (now - period if isinstance(period, timedelta) else None), None


def sidebar(engine: Engine, now: datetime) -> history.Selection:
    """The filters: time range, models, statuses, and how many rows to read at most."""
    st.sidebar.header("Filters")
    since, until = chosen_range(now)
    models = st.sidebar.multiselect("Model", history.model_names(engine), placeholder="every model")
    statuses = st.sidebar.multiselect("Status", ["ok", "error"], placeholder="ok and error")
    limit = st.sidebar.number_input("Newest rows at most", min_value=100, max_value=1_000_000, value=20_000, step=5000)
    return history.Selection(since, until, tuple(models), tuple(statuses), int(limit))


def headline(rows: pd.DataFrame) -> None:
    numbers = history.summary(rows)
    columns = st.columns(4)
    columns[0].metric("Images", f"{numbers['images']:,}")
    rate = numbers["error_rate"]
    columns[1].metric("Errors", "–" if rate is None else f"{rate:.1%}")
    for column, name in zip(columns[2:], ("p50", "p95")):
        value = numbers[name]
        column.metric(f"Latency {name}", "–" if value is None else f"{value:,.1f} ms")


def charts(engine: Engine, rows: pd.DataFrame, selection: history.Selection, now: datetime) -> None:
    """Traffic and latency over time, errors by code, best labels, and best scores per model beside the period
    before (drift)."""
    freq = history.bucket(selection.since, selection.until, rows)
    left, right = st.columns(2)
    left.subheader(f"Images per {freq}")
    left.bar_chart(history.traffic(rows, freq), color=["#2e7d32", "#c62828"])
    right.subheader("Latency (ms)")
    right.line_chart(history.latency(rows, freq))
    left, right = st.columns(2)
    left.subheader("Errors by code")
    codes = history.error_codes(rows)
    if codes.empty:
        left.caption("No errors in this selection.")
    else:
        left.bar_chart(codes)
    right.subheader("Best labels")
    labels = history.top_labels(rows)
    if labels.empty:
        right.caption("No labelled results in this selection.")
    else:
        right.bar_chart(labels)
    st.subheader("Best score per model")
    before = history.earlier(selection, now)
    if before is None:
        st.caption("Images per band of top-1 score (choose a time range to compare it with the period before).")
        st.bar_chart(history.score_histogram(rows), stack=False)
        return
    st.caption(
        "Each model's share of images per band of top-1 score, this period beside the one before it: "
        "a shift to the left is the first sign of drift."
    )
    st.bar_chart(history.score_shares(rows, history.load(engine, before)), stack=False)


def table(rows: pd.DataFrame, blobs: BlobStore, max_pixels: int) -> None:
    """The rows, newest first, with thumbnails of the inputs and outputs the history kept."""
    view = rows.loc[:, list(TABLE_COLUMNS)].copy()
    images: dict[str, st.column_config.ImageColumn] = {}
    for which in ("input", "output"):
        thumbnails = history.thumbnails(rows, blobs, max_pixels, which, IMAGE_ROWS)
        if any(thumbnails):
            view.insert(len(images), which, thumbnails)
            images[which] = st.column_config.ImageColumn(which.title(), width="small")
    st.subheader("Rows")
    if images:
        st.caption(f"Thumbnails for the newest {IMAGE_ROWS} rows; AI_SERVICE_HISTORY_IMAGES decides what is kept.")
    st.dataframe(view, column_config=images, hide_index=True, width="stretch")


def render() -> None:
    st.set_page_config(page_title="ai_service · history", layout="wide")
    st.title("Prediction history")
    config = load_settings({"log_to_file": False})  # what the server reads: env, AI_SERVICE_CONFIG, home
    if not config.history.enabled:
        st.info("History is off on this service (AI_SERVICE_HISTORY=off): there is nothing to show.")
        st.stop()
    engine = database(config.database_url)
    now = datetime.now(UTC)
    try:
        selection = sidebar(engine, now)
        rows = history.load(engine, selection)
    except SQLAlchemyError as error:
        st.error(f"The history at {safe_url(engine)} cannot be read: {str(error).splitlines()[0][:300]}")
        st.stop()
    st.caption(f"{safe_url(engine)} · {len(rows):,} rows" + (" (the newest)" if len(rows) == selection.limit else ""))
    headline(rows)
    if rows.empty:
        st.info("No predictions match these filters.")
        st.stop()
    try:
        charts(engine, rows, selection, now)
    except SQLAlchemyError as error:
        st.error(f"The history at {safe_url(engine)} cannot be read: {str(error).splitlines()[0][:300]}")
    table(rows, BlobStore(config.blobs_dir), config.limits.max_pixels)
    st.download_button("Download CSV", history.csv_bytes(rows), file_name=filename("csv"), mime="text/csv")


if __name__ == "__main__":
    render()
