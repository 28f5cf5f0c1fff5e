"""The history's HTTP face and its exports (SQLite): list, filters, cursor pages, entries, deletion, stored images,
CSV/JSON lines/Parquet read back by pandas, the CLI's export and `ai-service db`. The three database backends are
covered in test_history_storage.py."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import pyarrow.parquet as pq
import pytest
from openapi_spec_validator import validate as validate_openapi
from PIL import Image
from sqlalchemy import insert

from ai_service import cli, create_app
from ai_service.schemas import HistoryEntry, HistoryPage
from ai_service.service.history import export as export_module
from ai_service.service.history.query import COLUMNS
from ai_service.storage import migrate
from ai_service.storage.schema import Prediction, new_id
from tests.conftest import encode

TOKEN = "history-admin-token"
HISTORY = "/api/v1/history"
BASE_TIME = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
#: What pandas must read back, per column, from every format.
EXPECTED_DTYPES = {
    **{column: "string" for column in COLUMNS},
    "created_at": "datetime64[us, UTC]",
    "item_index": "Int64",
    "width": "Int64",
    "height": "Int64",
    "http_status": "Int64",
    "batch_size": "Int64",
    "top1_score": "float64",
    "total_ms": "float64",
    "input_stored": "boolean",
}


@pytest.fixture
def app(home: Path):
    return create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "admin_token": TOKEN})


def history_of(app):
    return app.extensions["ai_service"].history


def row(offset_s: float = 0.0, **values) -> dict:
    """A complete row `offset_s` seconds after BASE_TIME (a classification that went well, unless overridden)."""
    base = {
        "id": new_id(),
        "created_at": BASE_TIME + timedelta(seconds=offset_s),
        "request_id": "req-1",
        "source": "api",
        "job_id": None,
        "item_index": 0,
        "model": "digits",
        "version": "1.0",
        "task": "classification",
        "input_sha256": "a" * 64,
        "filename": "seven.png",
        "width": 28,
        "height": 28,
        "mode": "L",
        "status": "ok",
        "error_code": None,
        "http_status": 200,
        "error_message": None,
        "result": {"predictions": [{"label": "7", "score": 0.9871234567890123}]},
        "top1_label": "7",
        "top1_score": 0.9871234567890123,
        "timing_ms": {"decode": 0.25, "forward": 1.125, "total": 2.5},
        "total_ms": 2.5,
        "batch_size": 1,
        "client": "ip:127.0.0.1",
        "input_stored": False,
        "output_sha256": None,
    }
    return {**base, **values}


def seed(app, rows: list[dict]) -> list[dict]:
    """Write rows straight into the database (the recorder is tested elsewhere); returns them newest first."""
    with history_of(app).engine.begin() as connection:
        connection.execute(insert(Prediction), rows)
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)


def error_code(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:400]
    return response.get_json()["error"]["code"]


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    HistoryPage.model_validate(response.get_json())
    return [item["id"] for item in response.get_json()["items"]]


def png(color: int = 255, size=(28, 28), mode="L") -> bytes:
    return encode(Image.new(mode, size, color))


# --- listing and filters -------------------------------------------------------------------------------------------


@pytest.fixture
def varied(app) -> list[dict]:
    """Rows differing in every filtered column, newest first."""
    return seed(
        app,
        [
            row(0, model="digits", version="1.0", status="ok", source="api", request_id="r-a"),
            row(60, model="digits", version="2.0", status="error", source="web", error_code="corrupt_image"),
            row(120, model="edges", version="1.0", status="ok", source="job", job_id="job-1", input_sha256="b" * 64),
            row(180, model="edges", version="1.0", status="error", source="cli", request_id="r-b"),
            row(240, model="digits", version="1.0", status="ok", source="web", job_id="job-1", item_index=1),
        ],
    )


@pytest.mark.parametrize(
    "filters, wanted",
    [
        ({}, lambda r: True),
        ({"model": "digits"}, lambda r: r["model"] == "digits"),
        ({"model": "digits", "version": "2.0"}, lambda r: r["version"] == "2.0"),
        ({"version": "1.0"}, lambda r: r["version"] == "1.0"),
        ({"status": "error"}, lambda r: r["status"] == "error"),
        ({"source": "web"}, lambda r: r["source"] == "web"),
        ({"source": "cli"}, lambda r: r["source"] == "cli"),
        ({"request_id": "r-b"}, lambda r: r["request_id"] == "r-b"),
        ({"sha256": "b" * 64}, lambda r: r["input_sha256"] == "b" * 64),
        ({"job_id": "job-1"}, lambda r: r["job_id"] == "job-1"),
        ({"model": "edges", "status": "ok"}, lambda r: r["model"] == "edges" and r["status"] == "ok"),
        (
            {"model": "digits", "source": "web", "status": "ok"},
            lambda r: r["created_at"] == BASE_TIME + timedelta(seconds=240),
        ),
        ({"model": "nope"}, lambda r: False),
        ({"model": "digits", "status": ""}, lambda r: r["model"] == "digits"),  # empty = not set, as forms send it
    ],
)
def test_filters_alone_and_combined(client, varied, filters, wanted):
    assert ids(client.get(f"{HISTORY}?{urlencode(filters)}")) == [r["id"] for r in varied if wanted(r)]


@pytest.mark.parametrize(
    "since, until, seconds",
    [
        ("2025-03-01T12:01:00", None, [60, 120, 180, 240]),  # no offset: UTC
        ("2025-03-01T12:01:00Z", "2025-03-01T12:03:00Z", [60, 120]),  # until is exclusive
        ("2025-03-01T14:02:00+02:00", None, [120, 180, 240]),  # 12:02 UTC
        (None, "2025-03-01T07:02:00-05:00", [0, 60]),  # 12:02 UTC
        ("2025-03-01T12:00:00.000001Z", "2025-03-01T12:04:00.000001", [60, 120, 180, 240]),
        ("2025-03-02T00:00:00Z", None, []),
    ],
)
def test_since_and_until(client, varied, since, until, seconds):
    query = {key: value for key, value in {"since": since, "until": until}.items() if value}
    times = {r["id"]: (r["created_at"] - BASE_TIME).total_seconds() for r in varied}
    assert sorted(times[i] for i in ids(client.get(f"{HISTORY}?{urlencode(query)}"))) == seconds


def test_entries_are_complete_and_typed(client, varied):
    [item] = client.get(f"{HISTORY}?job_id=job-1&source=job").get_json()["items"]
    entry = HistoryEntry.model_validate(item)
    assert entry.created_at == BASE_TIME + timedelta(seconds=120) and item["created_at"].endswith("Z")
    assert item["result"] == {"predictions": [{"label": "7", "score": 0.9871234567890123}]}
    assert item["timing_ms"] == {"decode": 0.25, "forward": 1.125, "total": 2.5}
    assert set(item) == set(COLUMNS)


def test_cursor_pages_have_no_duplicates_or_gaps(client, app):
    # 23 rows, several sharing a timestamp (ties are ordered by id), across 5 pages of 5
    expected = seed(app, [row(index // 3) for index in range(23)])
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        body = client.get(f"{HISTORY}?{urlencode(query)}").get_json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 5 and seen == [r["id"] for r in expected]
    filtered = client.get(f"{HISTORY}?limit=50&model=digits").get_json()
    assert len(filtered["items"]) == 23 and filtered["next_cursor"] is None


def test_a_page_of_exactly_limit_rows_ends_the_listing(client, app):
    seed(app, [row(i) for i in range(4)])
    first = client.get(f"{HISTORY}?limit=2").get_json()
    second = client.get(f"{HISTORY}?limit=2&cursor={first['next_cursor']}").get_json()
    assert len(second["items"]) == 2 and second["next_cursor"] is None


@pytest.mark.parametrize(
    "query, field",
    [
        ("cursor=not-a-cursor!", "cursor"),
        ("cursor=" + "A" * 40, "cursor"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("status=maybe", "status"),
        ("source=email", "source"),
        ("since=yesterday", "since"),
        ("sha256=xyz", "sha256"),
        ("modle=digits", "modle"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(client, query, field):
    response = client.get(f"{HISTORY}?{query}")
    assert error_code(response, 422) == "invalid_parameter"
    error = response.get_json()["error"]
    assert ["query", field] in [issue["loc"] for issue in error["details"]] and field in error["message"]


# --- single entries and deletion -----------------------------------------------------------------------------------


def test_predict_results_name_their_entry(client, app):
    response = client.post("/api/v1/predict", data={"file": (io.BytesIO(png(0)), "blank.png"), "model": "digits"})
    [result] = response.get_json()["results"]
    history_of(app).writer.flush(5)
    entry = client.get(f"{HISTORY}/{result['history_id']}").get_json()
    HistoryEntry.model_validate(entry)
    assert (entry["source"], entry["model"], entry["filename"], entry["status"]) == ("api", "digits", "blank.png", "ok")
    assert entry["top1_label"] == result["predictions"][0]["label"]
    assert entry["request_id"] == response.headers["X-Request-ID"] and entry["client"] == "ip:127.0.0.1"
    assert entry["input_stored"] is False and entry["width"] == 28


def test_web_form_predictions_are_recorded_as_web(client, app):
    page = client.post("/predict", data={"file": (io.BytesIO(png(0)), "form.png"), "model": "digits"})
    assert page.status_code == 200
    history_of(app).writer.flush(5)
    [item] = client.get(f"{HISTORY}?source=web").get_json()["items"]
    assert item["filename"] == "form.png" and item["status"] == "ok"


def test_unknown_entry_is_404(client):
    assert error_code(client.get(f"{HISTORY}/{'0' * 32}"), 404) == "not_found"
    assert error_code(client.get(f"{HISTORY}/{'x' * 300}"), 404) == "not_found"


def test_delete_needs_the_admin_token_and_removes_the_row(client, app):
    [kept, gone] = seed(app, [row(0), row(1)])[::-1]
    url = f"{HISTORY}/{gone['id']}"
    assert error_code(client.delete(url), 401) == "unauthorized"
    assert error_code(client.delete(url, headers={"Authorization": "Bearer wrong"}), 401) == "unauthorized"
    assert client.get(url).status_code == 200
    deleted = client.delete(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert deleted.status_code == 204 and deleted.data == b""
    assert error_code(client.get(url), 404) == "not_found"
    assert error_code(client.delete(url, headers={"Authorization": f"Bearer {TOKEN}"}), 404) == "not_found"
    assert ids(client.get(HISTORY)) == [kept["id"]]


def test_delete_without_a_configured_token_is_disabled(home):
    client = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING"}).test_client()
    assert error_code(client.delete(f"{HISTORY}/{'0' * 32}", headers={"Authorization": "Bearer x"}), 403) == (
        "admin_disabled"
    )


def test_with_api_keys_reading_history_needs_a_key(home):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "api_keys": "k1"})
    client = app.test_client()
    assert error_code(client.get(HISTORY), 401) == "missing_api_key"
    assert error_code(client.get(f"{HISTORY}/export", headers={"X-API-Key": "k2"}), 401) == "invalid_api_key"
    assert client.get(HISTORY, headers={"Authorization": "Bearer k1"}).status_code == 200
    assert client.get(f"{HISTORY}/export", headers={"X-API-Key": "k1"}).status_code == 200


# --- stored images -------------------------------------------------------------------------------------------------


def predict_one(client, app, data: bytes, model: str) -> dict:
    response = client.post("/api/v1/predict", data={"file": (io.BytesIO(data), "in.png"), "model": model})
    assert response.status_code == 200, response.get_json()
    history_of(app).writer.flush(5)
    return response.get_json()["results"][0]


def test_all_keeps_inputs_and_outputs(home):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "history_images": "all"})
    client = app.test_client()
    upload = png(size=(12, 10), mode="RGB")
    upscaled = predict_one(client, app, upload, "upscale-2x")
    stored = client.get(f"{HISTORY}/{upscaled['history_id']}/input")
    assert stored.status_code == 200 and stored.data == upload and stored.mimetype == "image/png"
    assert "max-age" in stored.headers["Cache-Control"] and stored.headers["Cache-Control"].startswith("private")
    assert stored.headers["Content-Disposition"].startswith("inline")
    again = client.get(f"{HISTORY}/{upscaled['history_id']}/input", headers={"If-None-Match": stored.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    output = client.get(f"{HISTORY}/{upscaled['history_id']}/output")
    assert output.status_code == 200 and output.mimetype == "image/png"
    assert Image.open(io.BytesIO(output.data)).size == (24, 20)
    entry = client.get(f"{HISTORY}/{upscaled['history_id']}").get_json()
    assert entry["input_stored"] is True and entry["output_sha256"] and entry["result"]["image"]["kind"] == "image"
    digit = predict_one(client, app, png(0), "digits")  # classification: no output image
    assert client.get(f"{HISTORY}/{digit['history_id']}/input").data == png(0)
    assert error_code(client.get(f"{HISTORY}/{digit['history_id']}/output"), 404) == "not_found"


def test_jpeg_inputs_are_served_as_jpeg(home):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "history_images": "all"})
    client = app.test_client()
    upload = encode(Image.new("RGB", (28, 28), (200, 10, 10)), "JPEG")
    stored = client.get(f"{HISTORY}/{predict_one(client, app, upload, 'digits')['history_id']}/input")
    assert stored.mimetype == "image/jpeg" and stored.data == upload


def test_outputs_keeps_outputs_only(home):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "history_images": "outputs"})
    client = app.test_client()
    result = predict_one(client, app, png(size=(8, 8), mode="RGB"), "upscale-2x")
    assert error_code(client.get(f"{HISTORY}/{result['history_id']}/input"), 404) == "not_found"
    assert Image.open(io.BytesIO(client.get(f"{HISTORY}/{result['history_id']}/output").data)).size == (16, 16)


def test_none_keeps_no_images(client, app):
    result = predict_one(client, app, png(size=(8, 8), mode="RGB"), "upscale-2x")
    for which in ("input", "output"):
        assert error_code(client.get(f"{HISTORY}/{result['history_id']}/{which}"), 404) == "not_found"


# --- history off ---------------------------------------------------------------------------------------------------


def test_history_off_answers_history_disabled_everywhere(home):
    app = create_app(
        {"TESTING": True, "home": str(home), "log_level": "WARNING", "history": "off", "admin_token": TOKEN}
    )
    client = app.test_client()
    assert history_of(app) is None
    some = "0" * 32
    for response in (
        client.get(HISTORY),
        client.get(f"{HISTORY}/export?format=parquet"),
        client.get(f"{HISTORY}/{some}"),
        client.get(f"{HISTORY}/{some}/input"),
        client.get(f"{HISTORY}/{some}/output"),
        client.delete(f"{HISTORY}/{some}", headers={"Authorization": f"Bearer {TOKEN}"}),
    ):
        assert error_code(response, 404) == "history_disabled"
    result = client.post("/api/v1/predict", data={"file": (io.BytesIO(png()), "a.png")}).get_json()["results"][0]
    assert "history_id" not in result


# --- exports -------------------------------------------------------------------------------------------------------


def awkward_rows() -> list[dict]:
    """Rows with everything an export can get wrong: nulls in every nullable column, text needing quotes, unicode,
    empty strings beside nulls, full-precision floats, microseconds."""
    return [
        row(0.000001, filename='comma, "quote"\nnewline.png', request_id=""),
        row(
            1,
            status="error",
            error_code="corrupt_image",
            http_status=422,
            error_message='Damaged: ünïcödé ✓, "quoted"',
            result=None,
            top1_label=None,
            top1_score=None,
            timing_ms=None,
            total_ms=None,
            width=None,
            height=None,
            mode=None,
            input_sha256=None,
            batch_size=0,
            filename="",
        ),
        row(
            2,
            model="upscale-2x",
            task="image-to-image",
            result={"image": {"kind": "image", "width": 56, "height": 56, "mode": "RGB", "sha256": "c" * 64}},
            top1_label=None,
            top1_score=None,
            output_sha256="c" * 64,
            input_stored=True,
            job_id="job-9",
            item_index=7,
            source="job",
        ),
        row(2, top1_score=1 / 3, total_ms=0.1 + 0.2),  # same time as the previous row: ordered by id
    ]


@pytest.fixture
def awkward(app) -> list[dict]:
    """The awkward rows in the app's database, oldest first."""
    return seed(app, awkward_rows())[::-1]


def expected_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as the export should present them."""
    data = {}
    for column in COLUMNS:
        values = [r[column] for r in rows]
        if column in ("result", "timing_ms"):
            values = [None if v is None else json.dumps(v, separators=(",", ":")) for v in values]
        data[column] = pd.Series(values, dtype=EXPECTED_DTYPES[column])
    return pd.DataFrame(data)


def read_back(data: bytes, fmt: str) -> pd.DataFrame:
    """What a pandas user does with the downloaded file."""
    if fmt == "csv":
        frame = pd.read_csv(io.BytesIO(data), **export_module.csv_read_options())
    elif fmt == "jsonl":
        dtypes = {column: dtype for column, dtype in EXPECTED_DTYPES.items() if column != "created_at"}
        frame = pd.read_json(io.BytesIO(data), lines=True, dtype=dtypes, precise_float=True)
        if frame.empty:
            frame = pd.DataFrame({column: pd.Series([], dtype=dtype) for column, dtype in EXPECTED_DTYPES.items()})
    else:
        frame = pd.read_parquet(io.BytesIO(data), dtype_backend="numpy_nullable")
        # the file's types are checked on its Arrow schema; here only pandas' choice for them is normalized
        frame = frame.astype(
            {column: dtype for column, dtype in EXPECTED_DTYPES.items() if dtype in ("string", "float64")}
        )
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).dt.as_unit("us")
    return frame


def download(client, query: str):
    response = client.get(f"{HISTORY}/export?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_pandas_reads_back_exactly_the_rows_written(client, awkward, fmt):
    response = download(client, f"format={fmt}")
    assert response.content_type.startswith(export_module.MEDIA_TYPES[fmt].split(";")[0])
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="history-') and disposition.endswith(f'.{fmt}"')
    frame = read_back(response.data, fmt)
    assert list(frame.columns) == list(COLUMNS)
    assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == EXPECTED_DTYPES
    pd.testing.assert_frame_equal(frame, expected_frame(awkward), check_exact=True)


def test_parquet_has_the_fixed_schema_and_a_row_group_per_chunk(client, awkward, monkeypatch):
    monkeypatch.setattr(export_module, "CHUNK_ROWS", 3)
    parquet = pq.ParquetFile(io.BytesIO(download(client, "format=parquet").data))
    assert parquet.schema_arrow == export_module.ARROW_SCHEMA
    assert str(parquet.schema_arrow.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert parquet.metadata.num_row_groups == 2 and parquet.metadata.num_rows == 4


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_an_empty_export_is_still_a_valid_file(client, fmt):
    data = download(client, f"format={fmt}&model=nothing-matches").data
    frame = read_back(data, fmt)
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    if fmt == "csv":
        assert data.decode().strip() == ",".join(COLUMNS)
    if fmt == "jsonl":
        assert data == b""
    if fmt == "parquet":
        assert pq.read_schema(io.BytesIO(data)) == export_module.ARROW_SCHEMA


def test_exports_apply_the_filters_oldest_first(client, varied):
    frame = read_back(download(client, "format=csv&model=digits&since=2025-03-01T12:00:30Z").data, "csv")
    assert list(frame["id"]) == [r["id"] for r in reversed(varied) if r["model"] == "digits"][1:]
    assert error_code(client.get(f"{HISTORY}/export?format=xlsx"), 422) == "invalid_parameter"
    assert error_code(client.get(f"{HISTORY}/export?limit=5"), 422) == "invalid_parameter"  # no paging here


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_stream_chunk_by_chunk(client, app, monkeypatch, fmt):
    monkeypatch.setattr(export_module, "CHUNK_ROWS", 4)
    seed(app, [row(i) for i in range(10)])
    response = client.get(f"{HISTORY}/export?format={fmt}", buffered=False)
    assert response.status_code == 200 and response.is_streamed
    assert "Content-Length" not in response.headers  # nothing buffered the body to count it
    chunks = [chunk for chunk in response.response if chunk]
    assert len(chunks) >= 3  # 4 + 4 + 2 rows (+ the Parquet footer)
    assert len(read_back(b"".join(chunks), fmt)) == 10


def test_the_export_is_a_snapshot_of_when_it_started(client, app, monkeypatch):
    monkeypatch.setattr(export_module, "CHUNK_ROWS", 2)
    now = datetime.now(UTC)
    seed(app, [row(0, created_at=now - timedelta(seconds=10 - i)) for i in range(3)])
    stream = iter(client.get(f"{HISTORY}/export?format=jsonl", buffered=False).response)
    first = next(stream)
    seed(app, [row(0, created_at=datetime.now(UTC) + timedelta(seconds=1))])  # recorded while downloading
    lines = (first + b"".join(stream)).splitlines()
    assert len(lines) == 3


# --- the command line ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_cli_export_writes_what_the_api_serves(client, awkward, home, tmp_path, capsys, fmt):
    target = tmp_path / f"out.{fmt}"
    status = cli.main(["history", "export", "--home", str(home), "--format", fmt, "--output", str(target)])
    assert status == 0 and str(target) in capsys.readouterr().out
    served = download(client, f"format={fmt}").data
    if fmt == "parquet":
        pd.testing.assert_frame_equal(read_back(target.read_bytes(), fmt), read_back(served, fmt))
    else:
        assert target.read_bytes() == served
    status = cli.main(
        [
            "history",
            "export",
            "--home",
            str(home),
            "--format",
            fmt,
            "--source",
            "job",
            "--since",
            "2025-01-01",
            "-o",
            str(target),
        ]
    )
    assert status == 0 and list(read_back(target.read_bytes(), fmt)["source"]) == ["job"]


def test_cli_export_to_standard_output(client, awkward, home, capsysbinary):
    assert cli.main(["history", "export", "--home", str(home), "--format", "jsonl", "-o", "-"]) == 0
    assert capsysbinary.readouterr().out == download(client, "format=jsonl").data


def test_cli_export_refuses_bad_filters_and_leaves_no_file(home, tmp_path, capsys):
    target = tmp_path / "out.csv"
    assert cli.main(["history", "export", "--home", str(home), "--since", "last week", "-o", str(target)]) == 2
    assert "--since" in capsys.readouterr().err and not target.exists()
    assert cli.main(["history", "export", "--home", str(home), "-o", str(tmp_path / "missing" / "out.csv")]) == 1
    assert "No such file" in capsys.readouterr().err and not list(tmp_path.rglob("*.partial"))


def test_cli_db_commands_on_a_fresh_home(tmp_path, capsys):
    home = str(tmp_path / "fresh")
    head = migrate.head()
    assert cli.main(["db", "current", "--home", home]) == 0
    assert capsys.readouterr().out.strip() == f"(empty) (head is {head})"
    assert cli.main(["db", "current", "--check", "--home", home]) == 1
    capsys.readouterr()
    assert cli.main(["db", "upgrade", "--home", home]) == 0
    assert capsys.readouterr().out.strip().endswith(f"(empty) -> {head}")
    assert cli.main(["db", "upgrade", "--home", home]) == 0
    assert capsys.readouterr().out.strip().endswith(f"already at {head}")
    assert cli.main(["db", "current", "--check", "--home", home]) == 0
    assert capsys.readouterr().out.strip() == f"{head} (head)"
    assert cli.main(["db", "downgrade", "base", "--home", home]) == 0
    assert capsys.readouterr().out.strip().endswith("now at (empty)")
    assert (tmp_path / "fresh" / "var" / "ai_service.db").exists()


# --- the document --------------------------------------------------------------------------------------------------


def test_history_operations_are_documented(client):
    document = client.get("/api/v1/openapi.json").get_json()
    validate_openapi(document)
    paths = document["paths"]
    assert set(paths[HISTORY]) == {"get"} and set(paths[f"{HISTORY}/{{id}}"]) == {"get", "delete"}
    listing = paths[HISTORY]["get"]
    assert listing["tags"] == ["history"] and "422" in listing["responses"]
    query = {p["name"]: p for p in listing["parameters"] if p["in"] == "query"}
    assert set(query) == {
        "model",
        "version",
        "status",
        "source",
        "since",
        "until",
        "request_id",
        "sha256",
        "job_id",
        "limit",
        "cursor",
    }
    assert query["status"]["schema"]["enum"] == ["ok", "error"] and query["since"]["schema"]["format"] == "date-time"
    assert query["limit"]["schema"]["maximum"] == 500 and not any(p["required"] for p in query.values())
    export = paths[f"{HISTORY}/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {
        "application/octet-stream",  # listed first for generated clients: bytes, whichever format it is
        "text/csv",
        "application/x-ndjson",
        "application/vnd.apache.parquet",
    }
    delete = paths[f"{HISTORY}/{{id}}"]["delete"]
    assert delete["security"] == [{"adminToken": []}] and "204" in delete["responses"]
    assert "content" not in delete["responses"]["204"]
    assert "image/png" in paths[f"{HISTORY}/{{id}}/input"]["get"]["responses"]["200"]["content"]
    html = client.get("/docs").get_data(as_text=True)
    assert "GET</span> <code>/api/v1/history/export</code>" in html and 'name="path:model"' not in html


def test_cli_predict_is_recorded_as_cli(home, tmp_path, capsys):
    """`ai-service predict` runs through the same service call; its rows are written before the command returns."""
    image = tmp_path / "digit.png"
    Image.new("L", (24, 24), 90).save(image)
    assert cli.main(["predict", str(image), str(image), "--home", str(home), "--top-k", "1"]) == 0
    answer = json.loads(capsys.readouterr().out)
    ids = [result["history_id"] for result in answer["results"]]
    app = create_app({"home": str(home)})
    try:
        rows = [app.test_client().get(f"/api/v1/history/{row_id}").get_json() for row_id in ids]
    finally:
        app.extensions["ai_service"].close()
    assert [(row["source"], row["filename"], row["item_index"]) for row in rows] == [
        ("cli", "digit.png", 0),
        ("cli", "digit.png", 1),
    ]
    assert rows[0]["client"].startswith("cli:") and rows[0]["request_id"] == rows[1]["request_id"]
