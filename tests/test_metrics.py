"""Prometheus metrics: what /metrics exposes in-process, and multiprocess aggregation as gunicorn uses it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import encode
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from ai_service import create_app

ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) → value, from the exposition format."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(v for (sample, got), v in found.items() if sample == name and set(labels.items()) <= set(got))


@pytest.fixture
def client(home):
    return create_app({"TESTING": True, "home": str(home), "log_to_file": False}).test_client()


def test_requests_are_counted_by_route_status_and_model(client):
    before = samples(client.get("/metrics").get_data(as_text=True))
    png = encode(Image.new("L", (28, 28), 0))
    for _ in range(3):
        assert client.post("/api/v1/predict", data={"file": (io.BytesIO(png), "x.png")}).status_code == 200
    assert client.post("/api/v1/predict", data={"file": (io.BytesIO(b""), "x.png")}).status_code == 400
    assert client.get("/no/such/page/12345").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = samples(response.get_data(as_text=True))

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("ai_service_requests_total", endpoint="/api/v1/predict", method="POST", status="200") == 3
    assert grew("ai_service_requests_total", endpoint="/api/v1/predict", status="400") == 1
    assert grew("ai_service_requests_total", endpoint="unmatched", status="404") == 1
    assert value(after, "ai_service_requests_total", endpoint="/no/such/page/12345") == 0  # raw paths never
    assert grew("ai_service_request_duration_seconds_count", endpoint="/api/v1/predict") == 4
    assert value(after, "ai_service_worker_rss_bytes") > 10 * 2**20
    assert grew("ai_service_requests_total", endpoint="/metrics") == 0  # scrapes are not counted


def test_metrics_can_be_switched_off(home):
    client = create_app({"TESTING": True, "home": str(home), "log_to_file": False, "metrics": False}).test_client()
    response = client.get("/metrics")
    assert response.status_code == 404 and response.mimetype == "application/json"
    assert response.get_json() == {
        "error": {"code": "not_found", "message": "Metrics are disabled (AI_SERVICE_METRICS=0)."}
    }


WORKER = textwrap.dedent("""
    import sys
    from ai_service.observability import metrics
    for _ in range(int(sys.argv[1])):
        metrics.record_request("/api/v1/predict", "POST", "digits", 200, 0.02)
    metrics.record_batch("digits", 4, 0.01)
    metrics.record_queue("digits", int(sys.argv[1]))
    metrics.WORKER_RSS.set(1000 + int(sys.argv[1]))
""")
SCRAPE = textwrap.dedent("""
    import sys
    from prometheus_client import multiprocess
    from ai_service.observability import metrics
    if len(sys.argv) > 1:
        multiprocess.mark_process_dead(int(sys.argv[1]))  # what gunicorn.conf.py's child_exit does
    sys.stdout.write(metrics.render()[0].decode())
""")


def run_python(code: str, env: dict, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_multiprocess_mode_adds_up_every_worker(tmp_path):
    """Separate processes (gunicorn workers) write to one folder; any of them can render the total."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-c", WORKER, "3"], env=env, cwd=ROOT)
    second = subprocess.Popen([sys.executable, "-c", WORKER, "5"], env=env, cwd=ROOT)
    assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    found = samples(run_python(SCRAPE, env).stdout)
    assert value(found, "ai_service_requests_total", endpoint="/api/v1/predict", model="digits") == 8
    assert value(found, "ai_service_request_duration_seconds_count", endpoint="/api/v1/predict") == 8
    assert value(found, "ai_service_batch_size_count", model="digits") == 2
    rss = {
        dict(labels)["pid"]: v for (name, labels), v in found.items() if name == "ai_service_worker_rss_bytes" and v
    }  # the scraping process itself reports 0
    assert rss == {str(first.pid): 1003, str(second.pid): 1005}
    assert value(found, "ai_service_queue_depth", model="digits") == 8  # livesum over live workers

    after_death = samples(run_python(SCRAPE, env, first.pid).stdout)
    rss = {
        dict(labels)["pid"]: v
        for (name, labels), v in after_death.items()
        if name == "ai_service_worker_rss_bytes" and v
    }
    assert rss == {str(second.pid): 1005}  # a dead worker's gauges go, its counters stay
    assert value(after_death, "ai_service_queue_depth", model="digits") == 5
    assert value(after_death, "ai_service_requests_total", endpoint="/api/v1/predict") == 8


def test_access_line_carries_structured_fields(client):
    """One access record per request with id, status, sizes, timing, client and (for predictions) model."""
    from loguru import logger

    records = []
    sink = logger.add(
        lambda message: records.append(message.record),
        level="INFO",
        filter=lambda record: record["extra"].get("access"),
    )
    try:
        png = encode(Image.new("L", (28, 28), 0))
        response = client.post(
            "/api/v1/predict", data={"file": (io.BytesIO(png), "x.png")}, headers={"X-Request-ID": "access-line-1"}
        )
    finally:
        logger.remove(sink)
    assert response.status_code == 200
    (record,) = [r for r in records if r["extra"].get("request_id") == "access-line-1"]
    extra = record["extra"]
    assert (extra["method"], extra["path"], extra["status"]) == ("POST", "/api/v1/predict", 200)
    assert extra["bytes_in"] > len(png) and extra["bytes_out"] == len(response.data)
    assert extra["duration_ms"] > 0 and extra["client"] == "ip:127.0.0.1"
    assert extra["model"].startswith("digits") and extra["items"] == 1
    assert {"decode", "forward"} <= set(extra["timing_ms"])
    assert "model=digits" in record["message"] and "access-line-1" not in record["message"]
