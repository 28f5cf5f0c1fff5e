"""A background writer: rows queue in memory (bounded) and reach the database in batches, one transaction each.

Never the reason a request fails or waits: `submit` only enqueues, a full queue drops rows (counted and logged
once per interval), a database that is down is retried with backoff while rows wait, and an INSERT that is
retried after an unknown outcome cannot write a row twice (rows carry their own primary key; duplicates are
ignored).
"""

from __future__ import annotations

import atexit
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger
from sqlalchemy import Connection, Engine, Insert, Table
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from ai_service.observability import metrics
from ai_service.storage.database import backend

#: Shortest gap between two log lines about the same trouble (drops, database errors).
LOG_INTERVAL_S = 10.0
#: Retry delays while the database is unreachable: doubling from the first to the last.
BACKOFF_S = (0.2, 5.0)
#: How long shutdown waits for queued rows to reach the database.
CLOSE_TIMEOUT_S = 10.0


def unreachable(error: Exception) -> bool:
    """A connection problem (retry later), as opposed to a row the database refuses (retrying cannot help)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (OperationalError, InterfaceError, DisconnectionError, TimeoutError, OSError)) or (
        isinstance(error, SQLAlchemyTimeout)
    )


def insert_ignoring_duplicates(engine: Engine, table: Table) -> Insert:
    """INSERT that skips rows whose primary key exists (a retried batch that had in fact committed)."""
    kind = backend(engine)
    if kind == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing()
    if kind == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    statement = mysql_insert(table)  # not INSERT IGNORE: that also turns bad values into warnings and stores them
    key = next(iter(table.primary_key.columns)).name
    return statement.on_duplicate_key_update({key: statement.inserted[key]})


class SQLiteBatchInsert:
    """Rows as one multi-row INSERT per statement instead of sqlite3's executemany.

    executemany releases and re-takes the GIL around every row's sqlite3_step; with a dozen request threads
    wanting the GIL, each re-take waits out a switch interval, which made a row cost 4x the CPU under load (measured:
    40 -> 156 us/row beside 4 busy threads). One statement per few hundred rows takes the GIL back once.
    """

    #: Rows per statement: 27 columns x 500 stays far below SQLite's 32766 bound variables.
    ROWS_PER_STATEMENT = 500

    def __init__(self, engine: Engine, table: Table) -> None:
        dialect = engine.dialect
        quote = dialect.identifier_preparer.quote
        self.columns = [column.name for column in table.columns]
        self.processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in table.columns]
        #: Scalar column defaults, for keys a row leaves out (as Core's INSERT would fill them in).
        self.defaults = {
            column.name: column.default.arg
            for column in table.columns
            if column.default is not None and column.default.is_scalar
        }
        #: A complete row's values in column order, in C; only the few columns with a bind processor (times,
        #: JSON, booleans) are then converted in Python.
        self.values_of = operator.itemgetter(*self.columns)
        self.converted = [(index, process) for index, process in enumerate(self.processors) if process is not None]
        self.head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in self.columns)}) VALUES "
        self.row = "(" + ", ".join("?" * len(self.columns)) + ")"

    def sql(self, count: int) -> str:
        return self.head + ", ".join([self.row] * count) + " ON CONFLICT DO NOTHING"

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), self.ROWS_PER_STATEMENT):
            chunk = rows[start : start + self.ROWS_PER_STATEMENT]
            values: list[Any] = []
            for row in chunk:
                values.extend(self.bound(row))
            connection.exec_driver_sql(self.sql(len(chunk)), tuple(values))

    def bound(self, row: dict[str, Any]) -> list[Any]:
        """One row's parameters in column order, as SQLAlchemy's bind processors would have made them."""
        try:
            values = list(self.values_of(row))
        except KeyError:  # a row that leaves columns to their defaults
            values = [row[name] if name in row else self.defaults.get(name) for name in self.columns]
        for index, process in self.converted:
            values[index] = process(values[index])
        return values


class RowWriter:
    """Writes what `submit` queues into `table`; `prepare` turns a queued item into its row on the writer thread
    (so encoding, hashing or storing files happens off the request)."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        queue_size: int,
        batch_size: int,
        flush_s: float,
        prepare: Callable[[Any], dict[str, Any]] = dict,
        maintenance: Callable[[], None] | None = None,
        maintenance_every_s: float = 3600.0,
        setup: Callable[[], None] | None = None,
    ) -> None:
        self.engine, self.table = engine, table
        self.queue_size, self.batch_size, self.flush_s = queue_size, batch_size, flush_s
        self.prepare = prepare
        self.maintenance, self.maintenance_every_s = maintenance, maintenance_every_s
        #: Run (and retried like a write) before the first write: a schema the database lacked at start-up.
        self.setup = setup
        #: Rows in committed INSERTs (a batch retried after an unknown outcome counts again, though its rows are
        #: stored once), and rows dropped because the queue was full, since this process started the writer.
        self.written = 0
        self.dropped = 0
        self._statement = insert_ignoring_duplicates(engine, table)
        self._sqlite = SQLiteBatchInsert(engine, table) if backend(engine) == "sqlite" else None
        self._lock = threading.Lock()
        self._pid = -1
        #: Accepted items, oldest first; appended under `_lock`, taken by the writer thread (deque ops are atomic).
        self._items: deque[Any] = deque()
        self._unfinished = 0  # accepted and not yet written (or skipped): what flush() waits for
        #: Wakes the writer early: a full batch is waiting, or a flush or shutdown asks for the rows now.
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self._give_up_at = float("inf")
        self._thread: threading.Thread | None = None
        self._pending = 0  # rows taken from the queue and not yet written
        self._last_log: dict[str, float] = {}
        self._failing_since: float | None = None
        atexit.register(self.close)

    def submit(self, items: Sequence[Any]) -> int:
        """Queue items without waiting; returns how many were accepted (the rest are dropped and counted).

        The request thread pays for one uncontended lock and a deque append: no condition variable is notified
        per row, the writer wakes on its own every flush interval (or when a batch is full).
        """
        self._ensure_thread()
        with self._lock:
            accepted = max(0, min(len(items), self.queue_size - len(self._items)))
            self._items.extend(items[:accepted])
            self._unfinished += accepted
            dropped = len(items) - accepted
            self.dropped += dropped
            full_batch = len(self._items) >= self.batch_size
        if full_batch or self.flush_s == 0:
            self._wake.set()
        if dropped:
            metrics.record_history(dropped=dropped)
            self._log_once(
                "dropped",
                "history queue full ({} rows): dropped {} rows, {} in all since start; is the database slow or down?",
                self.queue_size,
                dropped,
                self.dropped,
            )
        return accepted

    @property
    def waiting(self) -> int:
        """Rows queued or in the batch being written."""
        return len(self._items) + self._pending

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Write every accepted row now, without waiting for company (True), or give up after the timeout."""
        deadline = time.monotonic() + timeout
        self._hurry.set()
        self._wake.set()
        try:
            while self._unfinished:
                if time.monotonic() > deadline or not (self._thread and self._thread.is_alive()):
                    return not self._unfinished
                time.sleep(0.01)
            return True
        finally:
            self._hurry.clear()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Graceful shutdown: write what is queued (retrying an unreachable database up to the timeout), stop."""
        if self._thread is None or self._pid != os.getpid():
            return
        self._give_up_at = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout + 1.0)
        atexit.unregister(self.close)
        if self.waiting:
            logger.warning("history: shut down with {} rows not written (database unreachable)", self.waiting)
        self._thread = None

    def _ensure_thread(self) -> None:
        """Start the thread in this process (after a fork the parent's thread and queue do not exist here)."""
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            if self._pid != os.getpid():
                self._items, self._unfinished, self._pending = deque(), 0, 0
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
            self._thread.start()

    def _urgent(self) -> bool:
        return self._stop.is_set() or self._hurry.is_set()

    def _collect(self) -> list[Any]:
        """The next batch: what arrived during one flush interval (at once when a batch is full, on a flush or
        at shutdown), at most batch_size items."""
        if len(self._items) < self.batch_size and not self._urgent():
            self._wake.wait(self.flush_s if self.flush_s > 0 else 0.5)
        self._wake.clear()  # a set() after this line wakes the next wait: no wake-up is lost
        items: list[Any] = []
        while len(items) < self.batch_size:
            try:
                items.append(self._items.popleft())
            except IndexError:
                break
        self._pending = len(items)
        return items

    def _run(self) -> None:
        rows: list[dict[str, Any]] = []
        taken = 0
        delay = BACKOFF_S[0]
        next_maintenance = time.monotonic() + min(60.0, self.maintenance_every_s)
        while True:
            if not rows:
                if self._stop.is_set() and not self._items:
                    return
                items = self._collect()
                taken = len(items)
                rows = self._prepare_all(items)
                if taken and not rows:  # every item failed to prepare
                    self._done(taken, 0)
                    taken = 0
            if rows:
                if self._write(rows):
                    self._done(taken, len(rows))
                    rows, taken, delay = [], 0, BACKOFF_S[0]
                else:
                    if self._stop.is_set() and time.monotonic() + delay > self._give_up_at:
                        return  # shutting down and the database stays away: close() reports what is lost
                    time.sleep(delay)
                    delay = min(delay * 2, BACKOFF_S[1])
                    continue
            metrics.record_history(queued=self.waiting)
            if self.maintenance and time.monotonic() >= next_maintenance and not self._stop.is_set():
                next_maintenance = time.monotonic() + self.maintenance_every_s
                self._maintain()

    def _prepare_all(self, items: list[Any]) -> list[dict[str, Any]]:
        rows = []
        for item in items:
            try:
                rows.append(self.prepare(item))
            except Exception as error:  # noqa: BLE001 - one bad record must not stop the writer
                logger.opt(exception=error).error("history: could not prepare a row; it is skipped")
        return rows

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """One transaction for the batch. False: the database is unreachable (keep the rows, retry). A batch the
        database refuses for its content is written row by row, and a row it still refuses is logged and skipped."""
        started = time.perf_counter()
        try:
            if self.setup is not None:
                self.setup()
                self.setup = None
            with self.engine.begin() as connection:
                if self._sqlite is not None:
                    self._sqlite.execute(connection, rows)
                else:
                    connection.execute(self._statement, rows)
        except Exception as error:  # noqa: BLE001 - any database failure keeps the rows
            metrics.record_history_write(time.perf_counter() - started, ok=False)
            if not unreachable(error):
                return self._write_each(rows, error)
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self._log_once(
                "write",
                "history: database write failed ({}: {}); {} rows waiting, retrying",
                type(error).__name__,
                str(error).splitlines()[0][:200],
                self.waiting,
            )
            return False
        metrics.record_history_write(time.perf_counter() - started, ok=True)
        if self._failing_since is not None:
            logger.info(
                "history: database reachable again after {:.1f} s; writing resumed",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
            self._last_log.pop("write", None)
        return True

    def _write_each(self, rows: list[dict[str, Any]], error: Exception) -> bool:
        """The batch was refused for its content: find the row(s) at fault, write the others."""
        logger.opt(exception=error).error("history: the database refused a batch of {} rows", len(rows))
        for row in rows:
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._statement, [row])
            except Exception as row_error:  # noqa: BLE001
                if unreachable(row_error):
                    return False
                logger.error("history: row {} skipped: {}", row.get("id"), str(row_error).splitlines()[0][:300])
        return True

    def _done(self, taken: int, written: int) -> None:
        with self._lock:
            self.written += written
            self._unfinished -= taken
        self._pending = 0
        metrics.record_history(written=written)

    def _maintain(self) -> None:
        try:
            self.maintenance()  # type: ignore[misc]
        except Exception as error:  # noqa: BLE001 - retried at the next interval
            self._log_once("maintenance", "history: scheduled clean-up failed ({}); retrying later", error)

    def _log_once(self, kind: str, message: str, *args: Any) -> None:
        """Log a recurring problem at most once per LOG_INTERVAL_S."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            self._last_log[kind] = now
            logger.warning(message, *args)
