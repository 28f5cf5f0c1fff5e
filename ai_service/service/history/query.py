"""Reading the history back: filtered, newest-first pages with an opaque keyset cursor, single rows, stored images.

Every caller (the JSON API, the History page, the CLI, the export) filters through `conditions`, so a filter means
the same everywhere.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.exc import SQLAlchemyError

from ai_service.errors import ServiceError
from ai_service.schemas import HistoryFilters, HistoryPageQuery
from ai_service.service.history.recorder import History
from ai_service.storage.schema import Prediction

#: The columns of a history row, in the order the API and the exports present them.
COLUMNS: tuple[str, ...] = tuple(column.name for column in Prediction.__table__.columns)  # type: ignore[attr-defined]
#: What new_id() makes: anything else is no row, without asking the database.
ROW_ID = re.compile(r"[0-9a-f]{32}")
NEWEST_FIRST = (Prediction.created_at.desc(), Prediction.id.desc())


def require(history: History | None) -> History:
    """The history, or the error that says it is off."""
    if history is None:
        raise ServiceError(
            "history_disabled", "Prediction history is off on this server; set AI_SERVICE_HISTORY=on to record it."
        )
    return history


@contextmanager
def reading() -> Iterator[None]:
    """A database that cannot be read is a 503 the client can retry, never a 500 (every reader goes through here)."""
    try:
        yield
    except SQLAlchemyError as error:
        raise ServiceError(
            "unavailable",
            "The history database cannot be read right now; predictions still work. Try again later.",
            {"reason": type(error).__name__},
            headers={"Retry-After": "5"},
        ) from None


def utc(moment: datetime) -> datetime:
    """A filter time without an offset means UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def conditions(filters: HistoryFilters) -> list[ColumnElement[bool]]:
    """The WHERE clauses of the filters that are set."""
    found: list[ColumnElement[bool]] = []
    for field, column in (
        ("model", Prediction.model),
        ("version", Prediction.version),
        ("status", Prediction.status),
        ("source", Prediction.source),
        ("request_id", Prediction.request_id),
        ("sha256", Prediction.input_sha256),
        ("job_id", Prediction.job_id),
    ):
        value = getattr(filters, field)
        if value is not None:
            found.append(column == value)
    if filters.since is not None:
        found.append(Prediction.created_at >= utc(filters.since))
    if filters.until is not None:
        found.append(Prediction.created_at < utc(filters.until))
    return found


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{utc(created_at).isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (time, id) a cursor points after; a damaged cursor is the client's error, not a 500."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, row_id = text.split("|", 1)
        return utc(datetime.fromisoformat(moment)), row_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ServiceError(
            "invalid_parameter",
            "Invalid parameter: cursor: not a cursor this server issued; pass `next_cursor` back unchanged.",
            [{"loc": ["query", "cursor"], "msg": "not a cursor this server issued", "type": "value_error"}],
        ) from None


def beyond(moment: datetime, row_id: str, newest_first: bool) -> ColumnElement[bool]:
    """Rows after (moment, id) in the (created_at, id) order: the keyset of the pages and of the export's chunks."""
    if newest_first:
        return or_(Prediction.created_at < moment, and_(Prediction.created_at == moment, Prediction.id < row_id))
    return or_(Prediction.created_at > moment, and_(Prediction.created_at == moment, Prediction.id > row_id))


def as_dict(row: Prediction) -> dict[str, Any]:
    """A row as the API's HistoryEntry."""
    return {name: getattr(row, name) for name in COLUMNS}


def page(history: History | None, query: HistoryPageQuery) -> dict[str, Any]:
    """One page, newest first, and the cursor of the next (None at the end)."""
    history = require(history)
    where = conditions(query)
    if query.cursor:
        moment, row_id = decode_cursor(query.cursor)
        where.append(beyond(moment, row_id, newest_first=True))
    statement = select(Prediction).where(*where).order_by(*NEWEST_FIRST).limit(query.limit + 1)
    with reading(), history.session() as session:
        rows: Sequence[Prediction] = session.scalars(statement).all()
    items = [as_dict(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    last = rows[query.limit - 1] if more else None
    return {"items": items, "next_cursor": encode_cursor(last.created_at, last.id) if last is not None else None}


def entry(history: History | None, row_id: str) -> dict[str, Any]:
    """One row by id."""
    history = require(history)
    row = None
    if ROW_ID.fullmatch(row_id):
        with reading(), history.session() as session:
            row = session.get(Prediction, row_id)
    if row is None:
        raise ServiceError("not_found", f"No history entry {row_id!r}.", {"id": row_id})
    return as_dict(row)


def remove(history: History | None, row_id: str) -> None:
    """Delete one row (its stored images go with the next retention run once no row refers to them)."""
    history = require(history)
    deleted = 0
    if ROW_ID.fullmatch(row_id):
        with reading(), history.engine.begin() as connection:
            deleted = connection.execute(delete(Prediction).where(Prediction.id == row_id)).rowcount
    if not deleted:
        raise ServiceError("not_found", f"No history entry {row_id!r}.", {"id": row_id})


def stored_image(history: History | None, row_id: str, which: str) -> bytes:
    """The stored input (as uploaded) or output (PNG) of a row; not_found when it was not kept."""
    found = entry(history, row_id)
    digest = found["input_sha256"] if which == "input" and found["input_stored"] else None
    if which == "output":
        digest = found["output_sha256"]
    data = require(history).blobs.get(digest) if digest else None
    if data is None:
        raise ServiceError(
            "not_found",
            f"History entry {row_id!r} has no stored {which} image (AI_SERVICE_HISTORY_IMAGES decides what is kept).",
            {"id": row_id, "image": which},
        )
    return data
