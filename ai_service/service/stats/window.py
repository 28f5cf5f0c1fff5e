"""A stats query's time range as resolved (defaults filled in, checked, cut into aligned buckets), and what every
aggregate does with it: its WHERE clauses, running the statement, one value per bucket."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Engine, cast, literal_column
from sqlalchemy.sql import Select

from ai_service.errors import ServiceError
from ai_service.schemas.stats import BUCKET_SECONDS, MAX_MODELS, StatsDriftQuery, StatsQuery
from ai_service.service.history.query import reading, require, utc
from ai_service.service.history.recorder import History
from ai_service.storage.portable import unix_seconds
from ai_service.storage.schema import Prediction

#: The range when a query names none: the last day.
DEFAULT_RANGE = timedelta(hours=24)
#: `auto` picks the smallest width that cuts the range into at most this many buckets.
AUTO_BUCKETS = 100
#: The times a range is clamped to: nothing is recorded before the Unix epoch, and bucket starts stay datetimes.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: More buckets than this is an error (a chart could not show them); ask for a wider bucket.
MAX_BUCKETS = 1000


def invalid(field: str, message: str) -> ServiceError:
    """A bad query parameter, as the history's are reported (422 invalid_parameter naming ["query", field])."""
    return ServiceError(
        "invalid_parameter",
        f"Invalid parameter: {field}: {message}.",
        [{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


@dataclass(frozen=True)
class Window:
    """[since, until) cut into `count` buckets of `width_s` seconds from `origin` (a multiple of the width, in Unix
    seconds, so that hours start on the hour and days at midnight UTC)."""

    since: datetime
    until: datetime
    width_s: int
    origin: int
    count: int
    models: tuple[str, ...]

    def starts(self) -> list[datetime]:
        """Each bucket's start."""
        return [datetime.fromtimestamp(self.origin + index * self.width_s, UTC) for index in range(self.count)]

    def bucket(self, column: Any) -> ColumnElement[int]:
        """The bucket index of a stored time, in SQL: integer division, exact, and a floor since every aggregate
        reads only rows at or after `since` (so at or after `origin`). The numbers are written into the statement
        (integers this code computed): bound parameters would make the same expression differ between SELECT and
        GROUP BY, which PostgreSQL then refuses to match."""
        offset = literal_column(str(self.origin), BigInteger)
        width = literal_column(str(self.width_s), BigInteger)
        return cast((unix_seconds(column) - offset) // width, BigInteger)

    def describe(self) -> dict[str, Any]:
        """The `window` member of every answer."""
        return {"since": self.since, "until": self.until, "bucket_s": self.width_s, "models": list(self.models)}


def resolve(query: StatsQuery, now: datetime | None = None) -> Window:
    """The range of `query` (until: now, since: a day before until), checked, with its bucket width."""
    until = utc(query.until) if query.until is not None else (now or datetime.now(UTC))
    since = utc(query.since) if query.since is not None else until - DEFAULT_RANGE
    if since >= until:
        raise invalid("since", "must be before `until`")
    since, until = (
        max(since, EARLIEST),
        min(until, LATEST),
    )  # nothing is recorded outside; the bucket maths stays in range
    if since >= until:
        since, until = (EARLIEST, EARLIEST + DEFAULT_RANGE) if until <= EARLIEST else (LATEST - DEFAULT_RANGE, LATEST)
    seconds = (until - since).total_seconds()
    if query.bucket == "auto":
        width = auto_width(since, until)
    else:
        width = BUCKET_SECONDS[query.bucket]
    count = span_count(since, until, width)
    if count > MAX_BUCKETS:
        raise invalid(
            "bucket", f"{count} buckets of {width} s in {seconds:g} s; at most {MAX_BUCKETS}: pick a wider one"
        )
    origin = math.floor(since.timestamp() / width) * width
    models = tuple(dict.fromkeys(query.model.split(","))) if query.model else ()
    if len(models) > MAX_MODELS:
        raise invalid("model", f"{len(models)} models; at most {MAX_MODELS}")
    return Window(since, until, width, origin, count, models)


def auto_width(since: datetime, until: datetime) -> int:
    """The smallest offered width with at most AUTO_BUCKETS buckets, or whole weeks for longer ranges."""
    widths = sorted(BUCKET_SECONDS.values())
    width = next((w for w in widths if span_count(since, until, w) <= AUTO_BUCKETS), None)
    if width is None:
        week = widths[-1]
        width = week * math.ceil((until - since).total_seconds() / week / (AUTO_BUCKETS - 1))
    return width


def span_count(since: datetime, until: datetime, width: int) -> int:
    """Aligned buckets of `width` seconds that [since, until) touches."""
    origin = math.floor(since.timestamp() / width) * width
    return max(1, math.ceil((until.timestamp() - origin) / width))


def baseline(query: StatsDriftQuery, window: Window) -> tuple[datetime, datetime]:
    """The period a drift query compares with: as asked, else the same length just before the range."""
    until = utc(query.baseline_until) if query.baseline_until is not None else window.since
    since = utc(query.baseline_since) if query.baseline_since is not None else until - (window.until - window.since)
    if since >= until:
        raise invalid("baseline_since", "must be before `baseline_until`")
    return since, until


def engine_of(history: History | None) -> Engine:
    """The database the history writes to (jobs share it); history_disabled when it is off."""
    return require(history).engine


def where(window: Window, since: datetime | None = None, until: datetime | None = None) -> list[ColumnElement[bool]]:
    """Rows of the window's models in [since, until) (default: the window's range)."""
    found = [
        Prediction.created_at >= (since or window.since),
        Prediction.created_at < (until or window.until),
    ]
    if window.models:
        found.append(Prediction.model.in_(window.models))
    return found


def run(engine: Engine, statement: Select[Any]) -> list[Any]:
    """The rows of one aggregate (a database that cannot be read is 503 unavailable, as for the history).

    PostgreSQL's JIT compiles these statements' long CASE expressions for longer than they then run (4 s of 5 for
    the month's latency histogram of a million rows): off for this transaction, the SQL is the same."""
    with reading(), engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL jit = off")
        return list(connection.execute(statement).all())


def series(rows: list[Any], count: int, index: int = 0, value: int = 1) -> list[Any]:
    """A list of one value per bucket from (bucket, value) rows; buckets without a row are 0."""
    found = [0] * count
    for row in rows:
        if 0 <= row[index] < count:
            found[row[index]] = row[value]
    return found


def ratio(part: int | float, whole: int | float) -> float | None:
    return part / whole if whole else None
