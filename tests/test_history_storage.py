"""The history's storage layer against real SQLite, MariaDB and PostgreSQL: migrations (also raced by two
processes and by gunicorn's workers), the background writer (batches, drops, no duplicates), one prediction's row
end to end, and a database that goes away and comes back (private servers, so shared ones are never stopped)."""

from __future__ import annotations

import hashlib
import io
import math
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import encode
from databases import BACKENDS, SERVERS, fresh_database, private_server
from flask import Flask
from live_gunicorn import running_gunicorn
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from ai_service import create_app
from ai_service.observability import metrics
from ai_service.service.history.rows import ROW_DEFAULTS
from ai_service.storage.database import connect
from ai_service.storage.migrate import current, downgrade, head, upgrade
from ai_service.storage.schema import Base, Prediction, new_id
from ai_service.storage.writer import RowWriter

ROOT = Path(__file__).resolve().parent.parent
TABLE = Prediction.__table__
#: Bounds on how long a test waits for rows to reach the database (s).
FLUSH_TIMEOUT_S = 30.0


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own on each backend, dropped afterwards."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The service's own engine on the fresh database (the options production uses)."""
    engine = connect(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    """The fresh database at head."""
    upgrade(engine)
    return engine


def count_rows(engine: Engine) -> int:
    """Rows in predictions."""
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(TABLE))


def row_ids(engine: Engine) -> list[str]:
    """Every id in predictions (duplicates would show twice; the primary key should make that impossible)."""
    with engine.connect() as connection:
        return list(connection.scalars(select(Prediction.id)))


def version_rows(engine: Engine) -> list[str]:
    """alembic_version's rows: exactly one, at head, after any number of concurrent upgrades."""
    with engine.connect() as connection:
        return list(connection.scalars(text("SELECT version_num FROM alembic_version")))


def make_row(**values: Any) -> dict[str, Any]:
    """A complete predictions row as the writer receives it (executemany needs every key in every row)."""
    row = {
        **ROW_DEFAULTS,
        "id": new_id(),
        "created_at": datetime.now(UTC),
        "request_id": "req",
        "source": "api",
        "item_index": 0,
        "model": "digits",
        "version": "1.0",
        "task": "classification",
        "input_sha256": "0" * 64,
        "filename": "x.png",
        "width": 8,
        "height": 8,
        "mode": "L",
        "status": "ok",
        "timing_ms": {"total": 1.5},
        "total_ms": 1.5,
        "batch_size": 1,
        "client": "ip:127.0.0.1",
    }
    row.update(values)
    return row


def write_transactions() -> float:
    """History write transactions this process has made (the write-duration histogram's count)."""
    for family in metrics.HISTORY_WRITE_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


# -- migrations ----------------------------------------------------------------------------------------------


def test_upgrade_from_empty_creates_the_table_and_its_indexes(engine: Engine) -> None:
    """A new deployment starts from nothing: upgrade must build exactly what the model declares."""
    assert current(engine) is None
    assert upgrade(engine) is None  # started from an empty database
    assert current(engine) == head() and version_rows(engine) == [head()]
    found = inspect(engine)
    assert "predictions" in found.get_table_names()
    assert {column["name"] for column in found.get_columns("predictions")} == {c.name for c in TABLE.columns}
    assert found.get_pk_constraint("predictions")["constrained_columns"] == ["id"]
    indexes = {index["name"]: index["column_names"] for index in found.get_indexes("predictions")}
    assert indexes == {index.name: [c.name for c in index.columns] for index in TABLE.indexes}
    assert upgrade(engine) == head()  # a second start finds it done and does nothing
    assert version_rows(engine) == [head()]


def test_downgrade_to_base_and_upgrade_again(migrated: Engine) -> None:
    """Rollbacks must work: base drops the table, and upgrading again rebuilds it."""
    downgrade(migrated, "base")
    assert current(migrated) is None
    assert "predictions" not in inspect(migrated).get_table_names()
    upgrade(migrated)
    assert current(migrated) == head() and version_rows(migrated) == [head()]
    assert "predictions" in inspect(migrated).get_table_names()
    assert count_rows(migrated) == 0


def test_model_and_migrations_agree(migrated: Engine) -> None:
    """The ORM model is what the code reads and writes; the migration is what the database has: no drift."""

    def ours(name: str | None, type_: str, parent: dict[str, str | None]) -> bool:
        return not (type_ == "table" and name == "alembic_version")

    with migrated.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True, "include_name": ours}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


UPGRADE_RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ai_service.storage.database import connect
    from ai_service.storage.migrate import upgrade

    url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    engine = connect(url)
    with engine.connect():  # connected and imported: only the upgrade itself is left to race
        pass
    ready.touch()
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no start signal")
        time.sleep(0.001)
    print("before", upgrade(engine))
    """
)


def test_two_processes_upgrading_at_once_upgrade_once(database_url: str, engine: Engine, tmp_path: Path) -> None:
    """gunicorn starts its workers together and each upgrades at start-up: the lock must make one do it."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(2)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE_RACER, database_url, str(flag), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(flag.exists() for flag in ready):
            assert time.monotonic() < deadline, "racers did not get ready"
            assert all(racer.poll() is None for racer in racers), [racer.communicate() for racer in racers]
            time.sleep(0.01)
        go.touch()
        outputs = [racer.communicate(timeout=120) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    befores = sorted(line for out, _ in outputs for line in out.splitlines() if line.startswith("before "))
    assert befores == [f"before {head()}", "before None"], outputs  # one upgraded, the other found it done
    assert version_rows(engine) == [head()]
    assert count_rows(engine) == 0


@pytest.mark.e2e
def test_gunicorn_workers_share_one_postgresql_schema(tmp_path: Path) -> None:
    """Production: two gunicorn workers start against an empty PostgreSQL database, both serve, one migrates."""
    with fresh_database("postgresql", tmp_path) as url:
        with running_gunicorn(
            tmp_path / "gunicorn", workers=2, threads=2, database_url=url, log_level="INFO"
        ) as server:
            pids: set[int] = set()
            deadline = time.monotonic() + 30
            while len(pids) < 2 and time.monotonic() < deadline:
                with requests.Session() as fresh:  # a new connection each time: the kernel spreads them
                    pids.add(fresh.get(server.base + "/healthz", timeout=10).json()["pid"])
            assert pids == set(server.workers()), pids
            png = encode(Image.new("L", (28, 28), 0))
            ids = set()
            for _ in range(8):
                with requests.Session() as fresh:
                    response = fresh.post(server.base + "/api/v1/predict", files={"file": ("x.png", png)}, timeout=30)
                assert response.status_code == 200, response.text
                ids.add(response.json()["results"][0]["history_id"])
            output = server.output()
        engine = connect(url)
        try:
            deadline = time.monotonic() + FLUSH_TIMEOUT_S
            while set(row_ids(engine)) != ids and time.monotonic() < deadline:
                time.sleep(0.1)
            assert set(row_ids(engine)) == ids and len(ids) == 8  # SIGTERM flushed whatever was still queued
            assert version_rows(engine) == [head()]
        finally:
            engine.dispose()
    assert output.count("upgrading schema") == 1, output[-3000:]


# -- the writer ----------------------------------------------------------------------------------------------


def test_writer_writes_in_batches(migrated: Engine) -> None:
    """One transaction per batch_size rows, not per row: the database sees few, large writes."""
    writer = RowWriter(migrated, TABLE, queue_size=100, batch_size=10, flush_s=0.5)
    try:
        before = write_transactions()
        rows = [make_row() for _ in range(35)]
        assert writer.submit(rows) == 35
        assert writer.flush(FLUSH_TIMEOUT_S)
        assert writer.written == 35 and writer.dropped == 0
        assert write_transactions() - before == math.ceil(35 / 10)
        assert sorted(row_ids(migrated)) == sorted(row["id"] for row in rows)
    finally:
        writer.close()


def test_writer_keeps_microseconds_and_utc(migrated: Engine) -> None:
    """History is ordered and filtered by time: every backend must keep microseconds and hand back UTC."""
    stamp = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    other = datetime(2026, 1, 2, 5, 4, 5, 654321, tzinfo=timezone(timedelta(hours=2)))  # converted, not dropped
    writer = RowWriter(migrated, TABLE, queue_size=10, batch_size=10, flush_s=0.0)
    try:
        first, second = make_row(created_at=stamp), make_row(created_at=other)
        writer.submit([first, second])
        assert writer.flush(FLUSH_TIMEOUT_S)
    finally:
        writer.close()
    with Session(migrated) as session:
        got = {row.id: row.created_at for row in session.scalars(select(Prediction))}
    assert got[first["id"]] == stamp and got[first["id"]].tzinfo is UTC
    assert got[second["id"]] == other and got[second["id"]].tzinfo is UTC and got[second["id"]].hour == 3


def test_full_queue_drops_instead_of_blocking(migrated: Engine) -> None:
    """A request must never wait for the history: beyond the queue's size rows are dropped, counted exactly."""
    release = threading.Event()
    taken = threading.Event()

    def slow_prepare(row: dict[str, Any]) -> dict[str, Any]:
        """The writer thread holds this row until the test lets go: a stand-in for a slow database."""
        taken.set()
        assert release.wait(FLUSH_TIMEOUT_S)
        return row

    writer = RowWriter(migrated, TABLE, queue_size=5, batch_size=1, flush_s=0.0, prepare=slow_prepare)
    try:
        held = make_row()
        assert writer.submit([held]) == 1
        assert taken.wait(10)  # the writer has it in hand: the queue is empty and holds 5
        rows = [make_row() for _ in range(12)]
        started = time.perf_counter()
        accepted = writer.submit(rows)
        assert time.perf_counter() - started < 0.5
        assert accepted == 5 and writer.dropped == 7
        assert writer.waiting == 6
        assert writer.submit([make_row()]) == 0 and writer.dropped == 8
        release.set()
        assert writer.flush(FLUSH_TIMEOUT_S)
        assert writer.written == 6 and writer.waiting == 0
        assert sorted(row_ids(migrated)) == sorted([held["id"]] + [row["id"] for row in rows[:5]])
    finally:
        release.set()
        writer.close()


def test_a_row_is_never_written_twice(migrated: Engine) -> None:
    """A batch retried after an unknown outcome (it had committed) or a row queued twice must give one row."""
    writer = RowWriter(migrated, TABLE, queue_size=100, batch_size=50, flush_s=0.2)
    try:
        batch = [make_row(filename=f"{n}.png") for n in range(5)]
        writer.submit(batch)
        assert writer.flush(FLUSH_TIMEOUT_S)
        retried = [{**row, "filename": "retry.png"} for row in batch]  # same ids: what a retry would send
        writer.submit([*retried, make_row(id=batch[0]["id"], filename="again.png")])
        assert writer.flush(FLUSH_TIMEOUT_S)
        twice = make_row()
        writer.submit([twice, dict(twice)])  # the same id twice in one batch
        assert writer.flush(FLUSH_TIMEOUT_S)
    finally:
        writer.close()
    ids = row_ids(migrated)
    assert len(ids) == len(set(ids)) == 6
    with migrated.connect() as connection:
        names = set(connection.scalars(select(Prediction.filename).where(Prediction.id.in_([r["id"] for r in batch]))))
    assert names == {f"{n}.png" for n in range(5)}  # the first write stands


def test_a_refused_row_is_skipped_and_its_batch_written(migrated: Engine) -> None:
    """A row the database refuses (NULL where a value is required) must be skipped on every backend, not stored
    coerced; the good rows of its batch are written."""
    writer = RowWriter(migrated, TABLE, queue_size=10, batch_size=10, flush_s=0.2)
    try:
        good, bad = make_row(), make_row(status=None)
        writer.submit([good, bad, dict(good)])
        assert writer.flush(FLUSH_TIMEOUT_S)
    finally:
        writer.close()
    assert row_ids(migrated) == [good["id"]]


# -- one prediction, end to end -------------------------------------------------------------------------------


@contextmanager
def history_app(home: Path, database_url: str, **settings: Any) -> Iterator[Flask]:
    """An app recording into `database_url`; its runtime is closed (queue flushed, engine released) afterwards,
    before the database is dropped."""
    app = create_app(
        {"TESTING": True, "home": str(home), "log_to_file": False, "database_url": database_url, **settings}
    )
    try:
        yield app
    finally:
        app.extensions["ai_service"].close()


def predict(client: Any, data: bytes) -> dict[str, Any]:
    """One upload to the JSON API; the response body."""
    response = client.post("/api/v1/predict", data={"file": (io.BytesIO(data), "digit.png")})
    assert response.status_code == 200, response.data[:500]
    return response.get_json()


def test_a_prediction_is_recorded_with_what_the_api_answered(database_url: str, home: Path) -> None:
    """The row is what an operator audits later: model, outcome, input hash, timings, who, from where, when."""
    png = encode(Image.new("L", (28, 28), 0))
    with history_app(home, database_url) as app:
        before = datetime.now(UTC)
        body = predict(app.test_client(), png)
        after = datetime.now(UTC)
        row_id = body["results"][0]["history_id"]
        history = app.extensions["ai_service"].history
        assert history.writer.flush(FLUSH_TIMEOUT_S)
        with Session(history.engine) as session:
            row = session.get(Prediction, row_id)
            assert row is not None
            assert (row.model, row.version, row.task) == (body["model"], body["version"], "classification")
            assert row.status == "ok" and row.http_status == 200 and row.error_code is None
            assert row.input_sha256 == hashlib.sha256(png).hexdigest()
            assert row.source == "api" and row.client == "ip:127.0.0.1"
            assert (row.filename, row.width, row.height, row.item_index) == ("digit.png", 28, 28, 0)
            assert {"decode", "preprocess", "forward", "postprocess", "total"} <= set(row.timing_ms)
            assert row.total_ms == row.timing_ms["total"] and row.total_ms > 0
            assert row.top1_label == body["results"][0]["predictions"][0]["label"]
            assert row.result["predictions"] == body["results"][0]["predictions"]
            assert row.created_at.tzinfo is UTC and row.created_at.utcoffset() == timedelta(0)
            # Sub-second precision kept: a value cut to whole seconds would fall before the request began.
            assert before <= row.created_at <= after, (before, row.created_at, after)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_pandas_reads_back_exactly_the_rows_written(database_url: str, home: Path, fmt: str) -> None:
    """The export through each backend's own types (DATETIME(6), JSONB, MariaDB's JSON-as-text, DOUBLE)."""
    from tests.test_history_api import awkward_rows, download, expected_frame, read_back, seed

    with history_app(home, database_url) as app:
        rows = seed(app, awkward_rows())[::-1]
        frame = read_back(download(app.test_client(), f"format={fmt}").data, fmt)
    pd.testing.assert_frame_equal(frame, expected_frame(rows), check_exact=True)


# -- the database goes away ----------------------------------------------------------------------------------


def dropped_metric(client: Any) -> float:
    """ai_service_history_dropped_total as GET /metrics reports it."""
    exposition = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "ai_service_history_dropped_total":
                return sample.value
    return 0.0


@pytest.mark.parametrize("kill", [False, True], ids=["shutdown", "crash"])
@pytest.mark.parametrize("backend", SERVERS)
def test_database_outage_drops_exactly_what_did_not_fit_and_recovers(backend: str, kill: bool, home: Path) -> None:
    """While the database is down predictions are answered at once; rows wait in a bounded queue, the rest are
    dropped and counted; when it is back, every row that waited is written once."""
    queue_size, batch_size, before_outage, during_outage = 40, 10, 30, 100
    png = encode(Image.new("L", (28, 28), 0))
    started = time.monotonic()
    with private_server(backend) as server:
        settings = {"history_queue_size": queue_size, "history_batch_size": batch_size, "history_flush_ms": 50}
        with history_app(home, server.url, **settings) as app:
            client = app.test_client()
            writer = app.extensions["ai_service"].history.writer
            engine = app.extensions["ai_service"].history.engine
            dropped_before = dropped_metric(client)
            accepted = {predict(client, png)["results"][0]["history_id"] for _ in range(before_outage)}
            assert None not in accepted
            assert writer.flush(FLUSH_TIMEOUT_S)
            assert writer.written == before_outage and writer.dropped == 0 and count_rows(engine) == before_outage

            server.stop(kill=kill)

            def burst(count: int) -> list[tuple[str | None, float]]:
                """One client's requests: each answer's history id and how long it took."""
                own = app.test_client()
                out = []
                for _ in range(count):
                    began = time.perf_counter()
                    body = predict(own, png)
                    out.append((body["results"][0].get("history_id"), time.perf_counter() - began))
                return out

            with ThreadPoolExecutor(4) as pool:
                answers = [item for part in pool.map(burst, [during_outage // 4] * 4, timeout=60) for item in part]
            assert len(answers) == during_outage
            assert max(seconds for _, seconds in answers) < 5.0  # answered, never held up by the database
            kept = {row_id for row_id, _ in answers if row_id is not None}
            # The writer is retrying with one batch in hand; every row is written, waiting or dropped.
            assert writer.written == before_outage
            assert writer.dropped == during_outage - len(kept) == during_outage - writer.waiting
            assert writer.dropped >= during_outage - queue_size - batch_size > 0
            assert dropped_metric(client) - dropped_before == writer.dropped

            server.start()
            assert writer.flush(FLUSH_TIMEOUT_S), f"{writer.waiting} rows still waiting after the restart"
            ids = row_ids(engine)
            assert len(ids) == len(set(ids)) == writer.written == before_outage + len(kept)
            assert set(ids) == accepted | kept
            assert len(ids) + writer.dropped == before_outage + during_outage
            assert dropped_metric(client) - dropped_before == writer.dropped
    assert time.monotonic() - started < 60
