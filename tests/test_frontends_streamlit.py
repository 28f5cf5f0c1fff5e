"""The Streamlit history app (`streamlit` extra): driven by Streamlit's AppTest over a real SQLite history whose rows
the test writes, its pandas side checked on all three databases, and `ai-service dashboard --streamlit` started."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
import requests
from browser_support import launch_for_screenshots, open_page, shot
from conftest import encode
from databases import BACKENDS, free_port, fresh_database, in_ci
from PIL import Image
from sqlalchemy import insert

from ai_service.cli import main
from ai_service.frontends import history_frame as history
from ai_service.service.history.export import csv_read_options
from ai_service.storage.blobs import BlobStore
from ai_service.storage.database import connect
from ai_service.storage.migrate import upgrade
from ai_service.storage.schema import Prediction, new_id

if importlib.util.find_spec("streamlit") is None:  # the `streamlit` extra (requirements-dev.txt installs it)
    if in_ci():
        pytest.fail("streamlit is not installed (CI=true: pip install -r requirements-dev.txt)", pytrace=False)
    pytest.skip("streamlit is not installed: pip install 'ai-service[streamlit]'", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "ai_service" / "frontends" / "streamlit_app.py"
NOW = datetime.now(UTC).replace(microsecond=0)


def row(minutes_ago: float, **values) -> dict:
    """A history row `minutes_ago` old: a digits prediction unless `values` say otherwise."""
    base = {
        "id": new_id(),
        "created_at": NOW - timedelta(minutes=minutes_ago),
        "source": "api",
        "model": "digits",
        "version": "1.0",
        "task": "classification",
        "status": "ok",
        "http_status": 200,
        "total_ms": 10.0,
        "top1_label": "7",
        "top1_score": 0.95,
        "batch_size": 1,
        "error_code": None,
        "input_sha256": None,
        "input_stored": False,
    }
    return base | values  # every row has the same keys: one executemany


def sample_rows(input_digest: str) -> list[dict]:
    """Known rows: digits over the last hour (one with its input kept), two errors, edges, one 3 and one 10 days old."""
    return [
        row(1, total_ms=10.0, top1_label="7", top1_score=0.95, input_sha256=input_digest, input_stored=True),
        row(2, total_ms=20.0, top1_label="7", top1_score=0.85),
        row(3, total_ms=30.0, top1_label="3", top1_score=0.45),
        row(4, status="error", error_code="unsupported_format", http_status=415, total_ms=None, top1_label=None,
            top1_score=None),
        row(5, status="error", error_code="image_too_large", http_status=413, total_ms=None, top1_label=None,
            top1_score=None),
        row(6, model="edges", task="image-to-image", total_ms=40.0, top1_label=None, top1_score=None),
        row(3 * 24 * 60, total_ms=99.0, top1_label="1", top1_score=1.0),
        row(10 * 24 * 60, total_ms=50.0, top1_label="1", top1_score=0.35),
    ]  # fmt: skip


def fill(url: str, blobs: BlobStore) -> str:
    """Create the schema, store one input image and write the sample rows; returns the stored image's sha256."""
    engine = connect(url)
    upgrade(engine)
    digest = blobs.put(encode(Image.new("RGB", (40, 30), (200, 30, 30))))
    with engine.begin() as connection:
        connection.execute(insert(Prediction), sample_rows(digest))
    engine.dispose()
    return digest


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A service home with a filled SQLite history, named by AI_SERVICE_HOME as `ai-service` would see it."""
    home = tmp_path / "home"
    monkeypatch.setenv("AI_SERVICE_HOME", str(home))
    for name in ("AI_SERVICE_DATABASE_URL", "AI_SERVICE_CONFIG", "AI_SERVICE_HISTORY"):
        monkeypatch.delenv(name, raising=False)
    fill(f"sqlite:///{home / 'var' / 'ai_service.db'}", BlobStore(home / "var" / "blobs"))
    return home


def started(script: Path = APP) -> AppTest:
    app = AppTest.from_file(str(script), default_timeout=60)
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def test_the_app_shows_the_last_weeks_rows_with_numbers_charts_images_and_csv(home):
    app = started()
    assert app.title[0].value == "Prediction history"
    assert app.sidebar.selectbox[0].value == "Last 7 days"
    assert app.sidebar.multiselect[0].options == ["digits", "edges"]
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Images"] == "7" and metrics["Errors"] == "28.6%"  # the last hour's 6 rows and the 3-day-old one
    assert metrics["Latency p50"] == "30.0 ms"  # 10, 20, 30, 40, 99
    table = app.dataframe[0].value
    assert len(table) == 7 and list(table["model"]).count("edges") == 1
    assert table.columns[0] == "input"  # thumbnails only where the history kept the input
    thumbnails = [value for value in table["input"] if isinstance(value, str)]
    assert len(thumbnails) == 1 and thumbnails[0].startswith("data:image/png;base64,")
    assert [header.value for header in app.subheader][:2] == ["Images per 1h", "Latency (ms)"]
    assert app.get("arrow_vega_lite_chart") or app.get("vega_lite_chart"), "no chart drawn"
    (button,) = app.get("download_button")
    assert button.proto.label == "Download CSV"


def test_filters_narrow_the_rows(home):
    app = started()
    app.sidebar.selectbox[0].set_value("Last hour").run()
    assert {metric.label: metric.value for metric in app.metric}["Images"] == "6"
    app.sidebar.multiselect[0].set_value(["digits"]).run()
    app.sidebar.multiselect[1].set_value(["error"]).run()
    assert not app.exception
    table = app.dataframe[0].value
    assert sorted(table["error_code"]) == ["image_too_large", "unsupported_format"]
    assert "input" not in table.columns  # neither error row kept an image
    app.sidebar.selectbox[0].set_value("Everything").run()
    app.sidebar.multiselect[1].set_value([]).run()
    assert {metric.label: metric.value for metric in app.metric}["Images"] == "7"  # digits only: 5 + the old ones
    assert app.subheader[0].value == "Images per 1D"  # the rows span 10 days
    app.sidebar.selectbox[0].set_value("Dates…").run()
    three_days_ago = (NOW - timedelta(days=3)).date()
    app.sidebar.date_input[0].set_value((three_days_ago, three_days_ago)).run()  # that whole UTC day
    assert not app.exception
    assert list(app.dataframe[0].value["total_ms"]) == [99.0]


def test_an_empty_selection_and_an_unreadable_database_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("AI_SERVICE_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("AI_SERVICE_DATABASE_URL", raising=False)
    app = started()  # no database yet: no table to read
    assert app.error and "cannot be read" in app.error[0].value
    engine = connect(f"sqlite:///{tmp_path / 'empty' / 'var' / 'ai_service.db'}")
    upgrade(engine)
    engine.dispose()
    app = started()
    assert app.info and "No predictions match" in app.info[0].value


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_and_aggregates_are_the_same_on_every_database(backend, tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    with fresh_database(backend, tmp_path) as url:
        digest = fill(url, blobs)
        engine = connect(url)
        try:
            week = history.load(engine, history.Selection(since=NOW - timedelta(days=1)))
            digits_ok = history.load(engine, history.Selection(models=("digits",), statuses=("ok",)))
            newest = history.load(engine, history.Selection(limit=2))
            week_before = history.earlier(history.Selection(since=NOW - timedelta(days=7)), NOW)
            before = history.load(engine, week_before)
            assert history.model_names(engine) == ["digits", "edges"]
        finally:
            engine.dispose()
    assert len(week) == 6 and week["created_at"].is_monotonic_decreasing
    assert sorted(digits_ok["total_ms"]) == [10.0, 20.0, 30.0, 50.0, 99.0]
    assert len(newest) == 2 and newest["created_at"].iloc[0] == NOW - timedelta(minutes=1)
    traffic = history.traffic(week, "1h")
    assert traffic["ok"].sum() == 4 and traffic["error"].sum() == 2
    latency = history.latency(week, "1D")
    assert latency["p50"].iloc[-1] == pytest.approx(25.0) and latency["p99"].iloc[-1] == pytest.approx(39.7)
    assert history.error_codes(week).to_dict() == {"unsupported_format": 1, "image_too_large": 1}
    assert history.top_labels(week).to_dict() == {"digits": {"7": 2, "3": 1}}
    scores = history.score_histogram(digits_ok)
    assert scores.loc["0.9–1.0", "digits"] == 2 and scores.loc["0.8–0.9", "digits"] == 1  # 0.95 and 1.0; 0.85
    assert scores.loc["0.4–0.5", "digits"] == 1 and scores.loc["0.3–0.4", "digits"] == 1
    assert scores["digits"].sum() == 5
    assert (week_before.since, week_before.until) == (NOW - timedelta(days=14), NOW - timedelta(days=7))
    shares = history.score_shares(digits_ok.iloc[:4], before)  # this week's four scored digits, the week before's one
    assert list(shares.columns) == ["digits (before)", "digits (now)"]
    assert shares["digits (before)"].to_dict()["0.3–0.4"] == 1.0 and shares["digits (now)"].sum() == pytest.approx(1)
    assert shares.loc["0.9–1.0", "digits (now)"] == 0.5
    thumbs = history.thumbnails(week, blobs, 10_000_000, "input", 10)
    assert [thumb is not None for thumb in thumbs] == [True] + [False] * 5
    assert week["input_sha256"].iloc[0] == digest == hashlib.sha256(blobs.get(digest)).hexdigest()
    back = pd.read_csv(io.BytesIO(history.csv_bytes(week)), **csv_read_options())
    assert list(back["id"]) == list(week["id"]) and back["total_ms"].isna().sum() == 2


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


def seen_in_a_browser(url: str, browser) -> set[str]:
    """Draw the app in Chromium (charts and table), screenshot it, and return every host the page requested."""
    context, page = open_page(browser, url, None)
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or request.url.split(":")[0]))
    try:
        page.goto(url)
        page.get_by_text("Prediction history").wait_for()
        page.locator("[data-testid='stDataFrame']").wait_for()
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
        page.wait_for_load_state("networkidle")
        shot(page, "streamlit-history")
    finally:
        context.close()
    return hosts


def test_ai_service_dashboard_streamlit_serves_the_app(home, tmp_path, browser):
    """The CLI starts Streamlit headless on loopback with usage statistics off; it answers until stopped."""
    port = free_port()
    command = [sys.executable, "-m", "ai_service.cli", "dashboard", "--streamlit", "--port", str(port)]
    log = (tmp_path / "streamlit.log").open("w+")
    env = {**os.environ, "HOME": str(tmp_path)}  # Streamlit writes its machine id and credentials under ~/.streamlit
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"exited {process.returncode}"
            try:
                if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text == "ok":
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "Streamlit did not answer within 60 s"
            time.sleep(0.3)
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        hosts = seen_in_a_browser(f"http://127.0.0.1:{port}/", browser)
        assert hosts <= {"127.0.0.1", "data", "blob"}, hosts  # no usage statistics, fonts or anything from elsewhere
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.seek(0)
        output = log.read()
    assert "gatherUsageStats" not in output, output  # the usage-statistics notice Streamlit prints when it is on
    assert f"URL: http://127.0.0.1:{port}" in output, output
    assert "External URL" not in output and "external IP" not in output, output  # never asked checkip.amazonaws.com


def test_plain_dashboard_points_at_the_page_and_a_bad_setting_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("AI_SERVICE_BIND", "127.0.0.1:8123")
    assert main(["dashboard"]) == 0
    assert "http://127.0.0.1:8123/dashboard" in capsys.readouterr().out
    monkeypatch.setenv("AI_SERVICE_WORKERS", "-3")
    assert main(["dashboard", "--streamlit"]) == 2
    assert capsys.readouterr().err.startswith("ai-service dashboard: setting workers (AI_SERVICE_WORKERS)")
