"""One SQLAlchemy engine per process for the configured URL: SQLite (WAL, busy timeout), MySQL/MariaDB, PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from ai_service.extras import missing_extra

#: How long a SQLite writer waits for another process's transaction before failing (ms).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Drivers the service is tested with, by dialect: the URL prefix a user writes.
DRIVERS = {"sqlite": "sqlite", "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "postgresql": "postgresql+psycopg"}


def normalize_url(url: str) -> str:
    """mysql:// and postgresql:// mean the drivers that ship with the service (pymysql, psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in ("mysql", "mariadb", "postgresql", "postgres"):
        parsed = parsed.set(drivername=DRIVERS.get(parsed.drivername, "postgresql+psycopg"))
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed.render_as_string(hide_password=False)


def connect(url: str, pool_size: int = 5) -> Engine:
    """An engine that survives server restarts (pre-ping, recycle) and, for SQLite, concurrent workers."""
    url = normalize_url(url)
    backend = make_url(url).get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": dumps_json, "json_deserializer": orjson.loads}
    if backend == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        connect_timeout = {"mysql": "connect_timeout", "postgresql": "connect_timeout"}[backend]
        options.update(
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
            pool_timeout=5,
            connect_args={connect_timeout: 5},
        )
        if backend == "mysql":
            options["connect_args"].update(read_timeout=30, write_timeout=30)
    try:
        engine = create_engine(url, **options)
    except ModuleNotFoundError as error:  # the driver's extra (mysql, postgres) is not installed
        raise missing_extra(error, f"AI_SERVICE_DATABASE_URL={backend}") from error
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def dumps_json(value: Any) -> str:
    """JSON columns through orjson (several times the stdlib's speed: the history writer's main cost); numpy and
    torch scalars as numbers, anything else unknown as its text."""
    return orjson.dumps(
        value, default=_json_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    ).decode()


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; the busy timeout makes workers wait for each other, not fail."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def backend(engine: Engine) -> str:
    """sqlite, mysql (MariaDB too) or postgresql."""
    return engine.url.get_backend_name()


def safe_url(engine: Engine) -> str:
    """The URL without its password, for logs, errors and /api/v1/system."""
    return engine.url.render_as_string(hide_password=True)
