"""GET /api/v1/stats/… against real SQLite, MariaDB and PostgreSQL: seeded rows (random but reproducible, plus a few
with known answers), every aggregate recomputed here in Python from the rows the test inserted and compared with
what the database computed; then the query's validation, access and the history-off answer (SQLite)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from databases import BACKENDS, fresh_database
from sqlalchemy import insert

from ai_service import create_app
from ai_service.schemas.stats import StatsQuery
from ai_service.service.stats.content import EXTENSIONS, LARGEST, SIZE_CLASSES
from ai_service.service.stats.usage import HIGH_OCTAVE, LOW_OCTAVE, SUB_BINS, TOP_BIN, histogram
from ai_service.service.stats.window import resolve
from ai_service.storage.schema import Job, Prediction, new_id

#: The timing stages a row may record (their sum is not checked: the total is what the aggregates read).
STAGES = ("load", "decode", "preprocess", "queue", "forward", "postprocess", "encode")
#: The range the tests aggregate: four hours; the baseline is the four hours before.
SINCE = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=4)
BASELINE = SINCE - timedelta(hours=4)
RANGE = {"since": "2026-03-01T08:00:00Z", "until": "2026-03-01T12:00:00Z", "bucket": "1h"}
MODELS = ("alpha", "beta", "gamma")
NAMES = ("a.png", "b.JPG", "c.jpeg", "d.webp", "e.tif", "noext", "", "f.gif")
ERRORS = (("image_decode_error", 400), ("timeout", 504), ("overloaded", 503))


def make_row(created_at: datetime, **values: Any) -> dict[str, Any]:
    """A complete predictions row (a successful classification unless told otherwise)."""
    row = {
        "id": new_id(),
        "created_at": created_at,
        "request_id": "req",
        "source": "api",
        "job_id": None,
        "item_index": 0,
        "model": "alpha",
        "version": "1",
        "task": "classification",
        "input_sha256": None,
        "filename": "x.png",
        "width": 28,
        "height": 28,
        "mode": "L",
        "status": "ok",
        "error_code": None,
        "http_status": 200,
        "error_message": None,
        "result": None,
        "top1_label": "7",
        "top1_score": 0.9,
        "timing_ms": {"total": 1.0},
        "total_ms": 1.0,
        "batch_size": 1,
        "client": "ip:127.0.0.1",
        "input_stored": False,
        "output_sha256": None,
    }
    return {**row, **values}


def random_rows(seed: int = 7, count: int = 600) -> list[dict[str, Any]]:
    """Rows spread over the baseline, the range and a little outside both, with every kind of value."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        moment = BASELINE - timedelta(minutes=30) + timedelta(seconds=rng.uniform(0, 9 * 3600))
        failed = rng.random() < 0.15
        code, status = rng.choice(ERRORS)
        stages = {stage: round(rng.uniform(0, 5), 3) for stage in STAGES if rng.random() < 0.7}
        total = round(rng.uniform(0.5, 250.0), 3) if rng.random() < 0.95 else None
        rows.append(
            make_row(
                moment,
                request_id=f"req-{index // rng.choice((1, 2, 3))}",
                source="job" if rng.random() < 0.2 else "api",
                model=rng.choice(MODELS),
                filename=rng.choice(NAMES),
                width=rng.choice((None, 16, 64, 65, 300, 1024, 2049, 5000)),
                height=rng.randint(1, 3000),
                mode=rng.choice(("L", "RGB", "RGBA", None)),
                status="error" if failed else "ok",
                error_code=code if failed else None,
                http_status=status if failed else 200,
                top1_label=None if failed else rng.choice(("cat", "dog", "bird", "fish")),
                top1_score=None if failed else rng.choice((round(rng.uniform(-0.05, 1.05), 4), 1.0, 0.5, 0.0)),
                timing_ms={**stages, **({"total": total} if total is not None else {})},
                total_ms=total,
            )
        )
    return rows


def known_rows() -> list[dict[str, Any]]:
    """Model `delta`: 100 images in the first hour taking 1..100 ms (p50 50, p95 95, p99 99 by nearest rank)."""
    return [
        make_row(SINCE + timedelta(seconds=30 * i), model="delta", total_ms=float(i + 1), request_id=f"d{i // 4}")
        for i in range(100)
    ]


def edge_rows() -> list[dict[str, Any]]:
    """Model `edge`: one row a microsecond each side of bucket and range edges."""
    tick, hour = timedelta(microseconds=1), timedelta(hours=1)
    moments = (SINCE - tick, SINCE + hour - tick, SINCE + hour, UNTIL - tick, UNTIL)
    return [make_row(moment, model="edge", request_id=f"e{i}") for i, moment in enumerate(moments)]


def job(created_at: datetime, status: str, finished_at: datetime | None, model: str = "alpha") -> dict[str, Any]:
    return {
        "id": new_id(),
        "created_at": created_at,
        "status": status,
        "model": model,
        "version": "1",
        "task": "classification",
        "options": {},
        "total": 3,
        "chunk_size": 2,
        "source": "api",
        "client": "",
        "executor": "local",
        "name": "files",
        "started_at": created_at,
        "finished_at": finished_at,
        "error_code": None,
        "error_message": None,
    }


def jobs_rows() -> list[dict[str, Any]]:
    hour = timedelta(hours=1)
    return [
        job(SINCE + timedelta(minutes=5), "succeeded", SINCE + timedelta(minutes=20)),
        job(SINCE + timedelta(minutes=50), "failed", SINCE + hour + timedelta(minutes=10)),
        job(SINCE + 2 * hour, "cancelled", SINCE + 3 * hour + timedelta(minutes=1), model="beta"),
        job(SINCE + 3 * hour, "running", None),
        job(SINCE - hour, "succeeded", SINCE + timedelta(minutes=2)),  # submitted before the range, ends in it
        job(UNTIL + hour, "queued", None),  # after the range
    ]


@pytest.fixture(params=BACKENDS)
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, list[dict[str, Any]], list[dict]]]:
    """An app on a fresh database of each backend, with the random rows, the known rows and the jobs in it."""
    with fresh_database(request.param, tmp_path) as url:
        app = create_app({"TESTING": True, "home": str(tmp_path / "home"), "log_level": "WARNING", "database_url": url})
        rows, jobs = random_rows() + known_rows() + edge_rows(), jobs_rows()
        with app.extensions["ai_service"].history.engine.begin() as connection:
            connection.execute(insert(Prediction), rows)
            connection.execute(insert(Job), jobs)
        try:
            yield app.test_client(), rows, jobs
        finally:
            app.extensions["ai_service"].close()


def get(client, name: str, **query: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/stats/{name}", query_string={**RANGE, **query})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()


def in_range(row: dict[str, Any], since: datetime = SINCE, until: datetime = UNTIL) -> bool:
    return since <= row["created_at"] < until


def bucket_of(moment: datetime) -> int:
    return int((moment - SINCE).total_seconds() // 3600)


def nearest_rank(values: list[float], p: int) -> float | None:
    """The smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered) / 100) - 1] if ordered else None


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)


def test_traffic_counts_images_requests_and_errors_per_bucket_and_model(seeded):
    client, rows, _ = seeded
    body = get(client, "traffic")
    assert body["window"] == {
        "since": "2026-03-01T08:00:00Z",
        "until": "2026-03-01T12:00:00Z",
        "bucket_s": 3600,
        "models": [],
    }
    assert body["buckets"] == [f"2026-03-01T{hour:02d}:00:00Z" for hour in range(8, 12)]
    expected: dict[str, dict[str, list]] = defaultdict(
        lambda: {"images": [0] * 4, "requests": [set() for _ in range(4)]}
    )
    errors: dict[str, list[int]] = defaultdict(lambda: [0] * 4)
    for row in filter(in_range, rows):
        index = bucket_of(row["created_at"])
        expected[row["model"]]["images"][index] += 1
        expected[row["model"]]["requests"][index].add(row["request_id"])
        errors[row["model"]][index] += row["status"] == "error"
    assert [item["model"] for item in body["series"]] == sorted(expected)
    for item in body["series"]:
        want = expected[item["model"]]
        assert item["images"] == want["images"], item["model"]
        assert item["requests"] == [len(ids) for ids in want["requests"]], item["model"]
        assert item["errors"] == errors[item["model"]], item["model"]
    assert body["images"] == sum(1 for row in rows if in_range(row))
    assert body["errors"] == sum(1 for row in rows if in_range(row) and row["status"] == "error")


def test_traffic_of_chosen_models(seeded):
    client, rows, _ = seeded
    body = get(client, "traffic", model="beta,delta,beta")
    assert body["window"]["models"] == ["beta", "delta"]
    assert [item["model"] for item in body["series"]] == ["beta", "delta"]
    assert body["images"] == sum(1 for row in rows if in_range(row) and row["model"] in ("beta", "delta"))
    assert body["series"][1]["images"] == [100, 0, 0, 0]
    assert body["series"][1]["requests"] == [25, 0, 0, 0]


def test_bucket_and_range_edges_are_exact(seeded):
    client, _, _ = seeded
    assert get(client, "traffic", model="edge")["series"][0]["images"] == [1, 1, 0, 1]


def reference_bin(value: float) -> int:
    """The latency histogram's bin of a time, computed from the float's exponent (not as the SQL does it)."""
    if value < 2.0**LOW_OCTAVE:
        return 0
    if value >= 2.0**HIGH_OCTAVE:
        return TOP_BIN
    exponent = math.frexp(value)[1] - 1  # value in [2**exponent, 2**(exponent + 1))
    return 1 + (exponent - LOW_OCTAVE) * SUB_BINS + int(value / 2.0**exponent * SUB_BINS) - SUB_BINS


def near_rank(got: float | None, values: list[float], p: int) -> None:
    """`got` is in the bin of the exact nearest-rank value, so within 1/SUB_BINS of it (the declared error)."""
    exact = nearest_rank(values, p)
    assert got is not None and exact is not None
    assert reference_bin(got) == reference_bin(exact), (got, exact)
    assert abs(got - exact) <= exact / SUB_BINS, (got, exact)


def test_latency_percentiles_are_nearest_rank_within_a_bin_per_bucket_and_model(seeded):
    client, rows, _ = seeded
    known = get(client, "latency", model="delta")
    assert known["count"] == [100, 0, 0, 0]
    # 1..100 ms: 50 is alone in its bin, 95 and 99 are the last of theirs, so these are exact
    assert (known["p50"][0], known["p95"][0], known["p99"][0]) == (50.0, 95.0, 99.0)
    assert known["p50"][1:] == [None, None, None]

    body = get(client, "latency")
    timed = [row for row in rows if in_range(row) and row["total_ms"] is not None]
    for index in range(4):
        values = [row["total_ms"] for row in timed if bucket_of(row["created_at"]) == index]
        assert body["count"][index] == len(values)
        for p in (50, 95, 99):
            near_rank(body[f"p{p}"][index], values, p)
    assert [item["model"] for item in body["models"]] == sorted({row["model"] for row in timed})
    for item in body["models"]:
        mine = [row for row in timed if row["model"] == item["model"]]
        values = [row["total_ms"] for row in mine]
        assert item["count"] == len(values)
        assert item["mean"] == approx(sum(values) / len(values))
        for p in (50, 95, 99):
            near_rank(item[f"p{p}"], values, p)


def bin_edges() -> list[float]:
    """Times on, just below and just above bin edges across the octaves, and outside them."""
    found = [0.0, -1.0, 12.3456, 2.0**HIGH_OCTAVE * 8]
    for exponent in (LOW_OCTAVE - 1, LOW_OCTAVE, -1, 0, 3, 7, HIGH_OCTAVE - 1, HIGH_OCTAVE):
        for step in (0, 1, 17, SUB_BINS - 1):
            edge = 2.0**exponent * (1 + step / SUB_BINS)
            found += [edge, math.nextafter(edge, 0.0), math.nextafter(edge, math.inf)]
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_latency_bins_are_exact_on_their_edges(backend, tmp_path):
    """Every backend puts a time in the same histogram bin as the float's exponent says, to the last bit."""
    with fresh_database(backend, tmp_path) as url:
        app = create_app({"TESTING": True, "home": str(tmp_path / "home"), "log_level": "WARNING", "database_url": url})
        engine = app.extensions["ai_service"].history.engine
        try:
            values = bin_edges()
            rows = [make_row(SINCE, model="bins", total_ms=value, timing_ms={"total": value}) for value in values]
            with engine.begin() as connection:
                connection.execute(insert(Prediction), rows)
            window = resolve(StatsQuery(since=SINCE, until=UNTIL, model="bins"))
            found = {part: (int(index), low) for part, index, _, _, low, _ in histogram(engine, window, Prediction.id)}
            assert len(found) == len(values)
            for row in rows:
                index, stored = found[row["id"]]
                assert stored == row["total_ms"]
                assert index == reference_bin(row["total_ms"]), row["total_ms"]
        finally:
            app.extensions["ai_service"].close()


def test_errors_rate_per_bucket_and_by_code(seeded):
    client, rows, _ = seeded
    body = get(client, "errors")
    mine = [row for row in rows if in_range(row)]
    images, failed = [0] * 4, [0] * 4
    for row in mine:
        images[bucket_of(row["created_at"])] += 1
        failed[bucket_of(row["created_at"])] += row["status"] == "error"
    assert (body["images"], body["errors"], body["total"]) == (images, failed, len(mine))
    assert body["rate"] == [approx(bad / total if total else None) for bad, total in zip(failed, images)]
    codes = Counter(row["error_code"] for row in mine if row["status"] == "error")
    statuses = dict((code, status) for code, status in ERRORS)
    assert body["codes"] == [
        {"code": code, "http_status": statuses[code], "count": count, "rate": approx(count / len(mine))}
        for code, count in sorted(codes.items(), key=lambda item: (-item[1], item[0]))
    ]


def score_bin(score: float) -> int:
    return 0 if score < 0 else 9 if score >= 1 else int(score * 10)


def test_drift_compares_labels_and_scores_with_the_period_before(seeded):
    client, rows, _ = seeded
    body = get(client, "drift", top=2)
    assert body["baseline"] == {"since": "2026-03-01T04:00:00Z", "until": "2026-03-01T08:00:00Z"}
    ok = [row for row in rows if row["status"] == "ok" and row["top1_score"] is not None]
    for item in body["models"]:
        now = [row for row in ok if row["model"] == item["model"] and in_range(row)]
        before = [row for row in ok if row["model"] == item["model"] and in_range(row, BASELINE, SINCE)]
        assert (item["count"], item["baseline_count"]) == (len(now), len(before))
        assert item["mean_score"] == approx(sum(row["top1_score"] for row in now) / len(now) if now else None)
        assert item["baseline_mean_score"] == approx(
            sum(row["top1_score"] for row in before) / len(before) if before else None
        )
        counts, base_counts = [0] * 10, [0] * 10
        for row in now:
            counts[score_bin(row["top1_score"])] += 1
        for row in before:
            base_counts[score_bin(row["top1_score"])] += 1
        assert item["scores"]["counts"] == counts and item["scores"]["baseline_counts"] == base_counts
        assert item["scores"]["edges"] == [pytest.approx(i / 10) for i in range(11)]
        labels, base_labels = Counter(row["top1_label"] for row in now), Counter(row["top1_label"] for row in before)
        ranked = sorted(set(labels) | set(base_labels), key=lambda label: (-labels[label], -base_labels[label], label))
        assert [entry["label"] for entry in item["labels"]] == [*ranked[:2], *(["(other)"] if ranked[2:] else [])]
        if ranked[2:]:
            other = item["labels"][-1]
            assert other["count"] == sum(labels[label] for label in ranked[2:])
            assert other["baseline_count"] == sum(base_labels[label] for label in ranked[2:])
        for entry in item["labels"][:2]:
            assert entry["count"] == labels[entry["label"]]
            assert entry["share"] == approx(labels[entry["label"]] / len(now) if now else 0.0)
            assert entry["baseline_share"] == approx(base_labels[entry["label"]] / len(before) if before else 0.0)
    assert {item["model"] for item in body["models"]} == {row["model"] for row in ok if in_range(row)} | {
        row["model"] for row in ok if in_range(row, BASELINE, SINCE)
    }


def test_drift_with_an_explicit_baseline(seeded):
    client, rows, _ = seeded
    body = get(client, "drift", model="delta", baseline_since="2026-03-01T09:00:00Z", baseline_until=UNTIL.isoformat())
    assert body["models"] == [] or body["models"][0]["baseline_count"] == 0
    body = get(client, "drift", model="delta", since="2026-03-01T09:00:00Z", baseline_since=SINCE.isoformat())
    (item,) = body["models"]
    assert (item["count"], item["baseline_count"]) == (0, 100)
    assert item["scores"]["baseline_counts"][9] == 100  # every known row scored 0.9


def size_class(row: dict[str, Any]) -> str:
    if row["width"] is None or row["height"] is None:
        return "unknown"
    longer = max(row["width"], row["height"])
    return next((name for bound, name in SIZE_CLASSES if longer <= bound), LARGEST)


def file_type(name: str) -> str:
    if not name:
        return "unnamed"
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return next((kind for kind, extensions in EXTENSIONS.items() if extension in extensions), "other")


def test_inputs_by_size_mode_and_file_type(seeded):
    client, rows, _ = seeded
    body = get(client, "inputs", model=",".join(MODELS))
    mine = [row for row in rows if in_range(row) and row["model"] in MODELS]
    assert body["total"] == len(mine)
    assert {item["name"]: item["count"] for item in body["sizes"]} == Counter(map(size_class, mine))
    order = [name for _, name in SIZE_CLASSES] + [LARGEST, "unknown"]
    assert [item["name"] for item in body["sizes"]] == sorted((item["name"] for item in body["sizes"]), key=order.index)
    assert {item["name"]: item["count"] for item in body["modes"]} == Counter(row["mode"] or "unknown" for row in mine)
    assert {item["name"]: item["count"] for item in body["formats"]} == Counter(file_type(r["filename"]) for r in mine)


def test_jobs_submitted_finished_and_throughput(seeded):
    client, rows, jobs = seeded
    body = get(client, "jobs")
    assert body["created"] == [2, 0, 1, 1]
    assert body["finished"] == {"succeeded": [2, 0, 0, 0], "failed": [0, 1, 0, 0], "cancelled": [0, 0, 0, 1]}
    assert body["states"] == {"queued": 0, "running": 1, "succeeded": 1, "failed": 1, "cancelled": 1}
    images = [0] * 4
    for row in rows:
        if in_range(row) and row["source"] == "job":
            images[bucket_of(row["created_at"])] += 1
    assert body["images"] == images
    assert body["images_per_s"] == [approx(count / 3600) for count in images]
    beta = get(client, "jobs", model="beta")
    assert beta["created"] == [0, 0, 1, 0] and beta["states"]["cancelled"] == 1


# ---- the query, access, history off (SQLite only) ------------------------------------------------------------


@pytest.fixture
def client(home: Path):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING"})
    yield app.test_client()
    app.extensions["ai_service"].close()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "2026-03-01T10:00:00Z", "until": "2026-03-01T09:00:00Z"}, "since"),
        ({"since": "1700000000"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"bucket": "2h"}, "bucket"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z", "bucket": "1h"}, "bucket"),
        ({"model": "a,,b"}, "model"),
        ({"model": "a b"}, "model"),
        ({"model": ",".join(f"m{i}" for i in range(51))}, "model"),
        ({"top": "0"}, "top"),
        ({"baseline_since": "2026-03-01T10:00:00Z", "baseline_until": "2026-03-01T09:00:00Z"}, "baseline_since"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(client, query, field):
    response = client.get("/api/v1/stats/drift", query_string=query)
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["details"][0]["loc"][:2] == ["query", field]


def test_defaults_are_the_last_day_in_at_most_100_buckets(client):
    body = client.get("/api/v1/stats/traffic").get_json()
    since, until = (datetime.fromisoformat(body["window"][key]) for key in ("since", "until"))
    assert until - since == timedelta(hours=24)
    assert abs((datetime.now(UTC) - until).total_seconds()) < 60
    assert body["window"]["bucket_s"] == 900 and len(body["buckets"]) <= 100
    assert body["images"] == 0 and body["series"] == []


def test_history_off_is_404_history_disabled(home: Path):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "history": "off"})
    response = app.test_client().get("/api/v1/stats/latency")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "history_disabled"


def test_with_api_keys_reading_stats_needs_a_key(home: Path):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "api_keys": "k1"})
    client = app.test_client()
    assert client.get("/api/v1/stats/errors").status_code == 401
    assert client.get("/api/v1/stats/errors", headers={"X-API-Key": "k1"}).status_code == 200
    app.extensions["ai_service"].close()
