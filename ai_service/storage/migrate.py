"""Schema upgrades with Alembic, serialized by a database lock so that workers starting together upgrade once.

The app upgrades at start-up (AI_SERVICE_DATABASE_MIGRATE=on, the default); `ai-service db upgrade` does the same
by hand for deployments that migrate before they roll out.
"""

from __future__ import annotations

import fcntl
import logging
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from loguru import logger
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ai_service.storage.database import backend, connect, safe_url

logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines ("Context impl ...") are noise here
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK_NAME = "ai_service_migrate"
#: Longest a starting worker waits for another one's upgrade (s).
LOCK_TIMEOUT_S = 300


class SchemaError(RuntimeError):
    """The database's schema is not the one this code needs and start-up may not upgrade it."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped migrations, bound to `connection` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: no schema yet)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the cluster-wide migration lock: advisory lock (PostgreSQL), GET_LOCK (MySQL), or a
    file lock beside the SQLite file."""
    kind = backend(engine)
    with engine.connect() as connection:
        if kind == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": zlib.crc32(LOCK_NAME.encode())})
            connection.commit()
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": zlib.crc32(LOCK_NAME.encode())})
                connection.commit()
        elif kind == "mysql":
            got = connection.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": LOCK_NAME, "wait": LOCK_TIMEOUT_S})
            if got.scalar() != 1:
                raise SchemaError(f"another process held the migration lock for {LOCK_TIMEOUT_S} s")
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
        else:
            database = engine.url.database
            if not database or database == ":memory:":
                yield connection
                return
            with open(f"{database}.migrate-lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield connection
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to `revision` under the lock; a process that finds it done does nothing. Returns the
    revision it started from."""
    with migration_lock(engine) as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        target = head() if revision == "head" else revision
        if before != target:
            logger.info("database {}: upgrading schema {} -> {}", safe_url(engine), before or "(empty)", target)
            command.upgrade(alembic_config(connection), revision)
            connection.commit()
        return before


def downgrade(engine: Engine, revision: str) -> None:
    """Step the schema back (`base` drops every table); for rollbacks and the migration tests."""
    with migration_lock(engine) as connection:
        command.downgrade(alembic_config(connection), revision)
        connection.commit()


def ensure_schema(engine: Engine, migrate: bool) -> None:
    """At start-up: upgrade (migrate on) or refuse to run against a schema this code does not know."""
    if migrate:
        upgrade(engine)
        return
    found, needed = current(engine), head()
    if found != needed:
        raise SchemaError(
            f"database {safe_url(engine)} is at schema {found or '(empty)'}, this version needs {needed}: "
            "run `ai-service db upgrade` (or set AI_SERVICE_DATABASE_MIGRATE=on)"
        )


def open_current(
    url: str, pool_size: int, migrate: bool, purpose: str, consequence: str
) -> tuple[Engine, Callable[[], None] | None]:
    """An engine whose schema is current, or, when the database cannot be reached at start-up, the engine and the
    schema step to run before its first use: the service starts anyway (`consequence` says how it copes). An
    out-of-date schema that start-up may not upgrade still stops it (SchemaError)."""
    engine = connect(url, pool_size)
    try:
        ensure_schema(engine, migrate)
    except SQLAlchemyError as error:
        logger.error(
            "{}: database {} unreachable at start-up ({}); {}",
            purpose,
            safe_url(engine),
            str(error).splitlines()[0][:200],
            consequence,
        )
        return engine, partial(ensure_schema, engine, migrate)
    return engine, None
