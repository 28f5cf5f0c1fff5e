"""The SQL that SQLite, MariaDB and PostgreSQL spell differently, as expressions compiled per dialect, so that the
queries built on them (the dashboard's aggregates) are the same SQLAlchemy code on every backend: whole seconds
since the epoch of a stored time, and floor.

Stored times are naive UTC (schema.UTCDateTime); each backend's spelling reads them as UTC whatever the session's
time zone is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class unix_seconds(FunctionElement[int]):  # noqa: N801 (a SQL function: lower case, like func.*)
    """Whole seconds since 1970-01-01 UTC of a stored time (the fraction dropped), exact on every backend: buckets
    of whole seconds from a whole-second origin never need the fraction, and floating-point day numbers would put
    times on a bucket's edge on the wrong side."""

    type = BigInteger()
    inherit_cache = True
    name = "unix_seconds"


class floor_int(FunctionElement[int]):  # noqa: N801
    """The largest integer not above a number (negative numbers too), as an integer."""

    type = BigInteger()
    inherit_cache = True
    name = "floor_int"


def _argument(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


@compiles(unix_seconds, "sqlite")
def _seconds_sqlite(element: unix_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # The stored text is 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): its first 19 characters, as SQLite's date functions
    # round the fraction to milliseconds (59.9999995 s would become the next minute). julianday() is a few times
    # faster than strftime('%s'); its day number is off by microseconds at most, which ROUND removes.
    value = _argument(element, compiler, **kw)
    return f"CAST(ROUND((julianday(substr({value}, 1, 19)) - 2440587.5) * 86400.0) AS INTEGER)"


@compiles(unix_seconds, "mysql")
def _seconds_mysql(element: unix_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # UNIX_TIMESTAMP() would read the DATETIME in the session's time zone; a difference from the epoch does not
    return f"TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {_argument(element, compiler, **kw)})"


@compiles(unix_seconds, "postgresql")
def _seconds_postgresql(element: unix_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # a timestamp without time zone: EXTRACT counts from the epoch as if it were UTC, which it is here (numeric)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {_argument(element, compiler, **kw)})) AS BIGINT)"


@compiles(floor_int)
def _floor_default(element: floor_int, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(FLOOR({_argument(element, compiler, **kw)}) AS BIGINT)"


@compiles(floor_int, "mysql")
def _floor_mysql(element: floor_int, compiler: SQLCompiler, **kw: Any) -> str:
    # FLOOR of a DECIMAL is a DECIMAL there, and MySQL spells a 64-bit integer cast SIGNED
    return f"CAST(FLOOR({_argument(element, compiler, **kw)}) AS SIGNED)"


@compiles(floor_int, "sqlite")
def _floor_sqlite(element: floor_int, compiler: SQLCompiler, **kw: Any) -> str:
    # floor() exists only in builds with the math functions; CAST truncates toward zero, so step negatives down
    value = _argument(element, compiler, **kw)
    return f"(CAST({value} AS INTEGER) - (({value}) < CAST({value} AS INTEGER)))"
