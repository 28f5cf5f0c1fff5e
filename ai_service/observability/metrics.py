"""Prometheus metrics that add up across gunicorn workers (prometheus-client multiprocess mode).

Under gunicorn, gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at AI_SERVICE_HOME/var/prometheus
before any worker imports prometheus_client, empties it at start (on_starting) and drops a dead
worker's live gauges (child_exit); each worker writes its samples there and `/metrics` aggregates them.
Without that variable (development server, tests) the default in-process registry is used. Recording
functions are plain calls with no Flask, so models and the engine can use them.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ai_service.devices import process_rss

if TYPE_CHECKING:
    import torch
    from flask import Flask

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "ai_service_requests_total",
    "HTTP requests answered, by route, method, model and status.",
    ("endpoint", "method", "model", "status"),
)
LATENCY = Histogram(
    "ai_service_request_duration_seconds",
    "Time from request start to response, by route and model.",
    ("endpoint", "model"),
    buckets=LATENCY_BUCKETS,
)
INFERENCE_ITEMS = Counter(
    "ai_service_inference_items_total", "Images run through a model, by outcome.", ("model", "outcome")
)
BATCH_SIZE = Histogram("ai_service_batch_size", "Images per forward pass.", ("model",), buckets=BATCH_BUCKETS)
FORWARD_SECONDS = Histogram(
    "ai_service_forward_duration_seconds", "Time of one forward pass (one batch).", ("model",), buckets=LATENCY_BUCKETS
)
QUEUE_WAIT = Histogram(
    "ai_service_queue_wait_seconds", "Time an item waited before its batch ran.", ("model",), buckets=LATENCY_BUCKETS
)
QUEUE_DEPTH = Gauge(
    "ai_service_queue_depth",
    "Items waiting for a batch, summed over live workers.",
    ("model",),
    multiprocess_mode="livesum",
)
OOM_EVENTS = Counter(
    "ai_service_oom_total", "Device out-of-memory errors during a forward pass, by what followed.", ("model", "outcome")
)
MODEL_LOADS = Counter("ai_service_model_loads_total", "Model loads, by outcome.", ("model", "outcome"))
MODEL_LOAD_SECONDS = Histogram(
    "ai_service_model_load_duration_seconds", "Time to load a model.", ("model",), buckets=LOAD_BUCKETS
)
MODEL_UNLOADS = Counter("ai_service_model_unloads_total", "Model unloads (admin, eviction, shutdown).", ("model",))
MODEL_UNLOAD_SECONDS = Histogram(
    "ai_service_model_unload_duration_seconds", "Time to unload a model.", ("model",), buckets=LOAD_BUCKETS
)
MODELS_LOADED = Gauge(
    "ai_service_model_loaded_workers",
    "Live workers that hold the model loaded.",
    ("model",),
    multiprocess_mode="livesum",
)
DEVICE_MEMORY = Gauge(
    "ai_service_device_memory_bytes",
    "Device memory held by PyTorch, summed over live workers.",
    ("device", "kind"),
    multiprocess_mode="livesum",
)
DEVICE_MEMORY_TOTAL = Gauge(
    "ai_service_device_memory_total_bytes", "Total memory of each device.", ("device",), multiprocess_mode="livemax"
)
WORKER_RSS = Gauge(
    "ai_service_worker_rss_bytes", "Resident memory of each live worker process.", multiprocess_mode="liveall"
)
KEEPALIVE_REUSED = Counter(
    "ai_service_keepalive_reused_total",
    "Keep-alive requests served by the thread that "
    "answered the previous one, without the poller (ai_service/server/worker.py).",
)

HISTORY_ROWS = Counter(
    "ai_service_history_rows_total",
    "History rows by fate: written to the database, or dropped because its queue was full.",
    ("outcome",),
)
HISTORY_DROPPED = Counter(
    "ai_service_history_dropped_total", "History rows dropped because the write queue was full (database slow or down)."
)
HISTORY_QUEUE = Gauge(
    "ai_service_history_queue_depth",
    "History rows waiting for the database, summed over live workers.",
    multiprocess_mode="livesum",
)
HISTORY_WRITE_ERRORS = Counter(
    "ai_service_history_write_errors_total", "Failed history write transactions (each is retried)."
)
HISTORY_WRITE_SECONDS = Histogram(
    "ai_service_history_write_duration_seconds", "Time of one history write transaction.", buckets=LATENCY_BUCKETS
)


def multiprocess_dir() -> Path | None:
    """The shared sample folder when running under gunicorn, else None."""
    folder = os.environ.get(MULTIPROC_ENV)
    return Path(folder) if folder else None


#: The labelled series of the per-request metrics, as `labels()` returns them (it checks and converts its arguments
#: and takes a lock on every call: ~9 calls and ~40 µs of a tiny model's request). Series are never removed.
_series: dict[tuple, Any] = {}


def series(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, remembered."""
    key = (id(metric), *values)
    found = _series.get(key)
    if found is None:
        found = _series[key] = metric.labels(*values)
    return found


def record_request(endpoint: str, method: str, model: str, status: int, seconds: float) -> None:
    series(REQUESTS, endpoint, method, model, str(status)).inc()
    series(LATENCY, endpoint, model).observe(seconds)


def record_batch(model: str, size: int, forward_seconds: float) -> None:
    """One forward pass of `size` images (called by the engine)."""
    series(BATCH_SIZE, model).observe(size)
    series(FORWARD_SECONDS, model).observe(forward_seconds)


def record_items(model: str, outcome: str, count: int = 1) -> None:
    """Images finished with `outcome` (ok, invalid, timeout, oom, error)."""
    if count:
        series(INFERENCE_ITEMS, model, outcome).inc(count)


def record_queue(model: str, depth: int, waited_seconds: float | None = None) -> None:
    """Current queue depth for `model`, and optionally how long the item just taken waited."""
    series(QUEUE_DEPTH, model).set(depth)
    if waited_seconds is not None:
        series(QUEUE_WAIT, model).observe(waited_seconds)


def record_oom(model: str, outcome: str) -> None:
    """A CUDA OOM in a forward pass and what happened next (retried, failed)."""
    OOM_EVENTS.labels(model, outcome).inc()


def record_model_load(model: str, seconds: float, ok: bool) -> None:
    MODEL_LOADS.labels(model, "ok" if ok else "failed").inc()
    MODEL_LOAD_SECONDS.labels(model).observe(seconds)
    if ok:
        MODELS_LOADED.labels(model).set(1)


def record_model_unload(model: str, seconds: float) -> None:
    MODEL_UNLOADS.labels(model).inc()
    MODEL_UNLOAD_SECONDS.labels(model).observe(seconds)
    MODELS_LOADED.labels(model).set(0)


def record_history(written: int = 0, dropped: int = 0, queued: int | None = None) -> None:
    """Rows the history writer wrote or dropped, and how many wait."""
    if written:
        HISTORY_ROWS.labels("written").inc(written)
    if dropped:
        HISTORY_ROWS.labels("dropped").inc(dropped)
        HISTORY_DROPPED.inc(dropped)
    if queued is not None:
        HISTORY_QUEUE.set(queued)


def record_history_write(seconds: float, ok: bool) -> None:
    HISTORY_WRITE_SECONDS.observe(seconds)
    if not ok:
        HISTORY_WRITE_ERRORS.inc()


#: Process gauges are samples: refreshing them once a second per worker is as good for a scrape as on
#: every request, and spares each request a read of /proc (and, on CUDA, three allocator queries).
GAUGE_REFRESH_S = 1.0
_gauges_refreshed = [-GAUGE_REFRESH_S]


def update_process_gauges(device: torch.device | None, force: bool = False) -> None:
    """Refresh this worker's RSS and, on CUDA, its allocator counters, at most once a second."""
    now = time.monotonic()
    if not force and now - _gauges_refreshed[0] < GAUGE_REFRESH_S:
        return
    _gauges_refreshed[0] = now
    WORKER_RSS.set(process_rss())
    if device is None or device.type != "cuda":
        return
    import torch

    name = str(device)
    DEVICE_MEMORY.labels(name, "allocated").set(torch.cuda.memory_allocated(device))
    DEVICE_MEMORY.labels(name, "reserved").set(torch.cuda.memory_reserved(device))
    DEVICE_MEMORY_TOTAL.labels(name).set(torch.cuda.get_device_properties(device).total_memory)


def render() -> tuple[bytes, str]:
    """The exposition text: every worker's samples under gunicorn, this process's otherwise."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _endpoint_label() -> str:
    """The route pattern (bounded cardinality), never the raw path."""
    from flask import request

    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def install_request_metrics(app: Flask, device: torch.device | None) -> None:
    """Count and time every request except scrapes of /metrics itself; `device` is whose memory the gauges sample."""
    from flask import g, request

    from ai_service.observability.logging import request_fields, when_sent

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _record(response):
        started = g.get("metrics_started")
        if started is not None and request.path != "/metrics":
            model = str(request_fields().get("model", ""))
            method = request.method if request.method in KNOWN_METHODS else "OTHER"
            facts = (_endpoint_label(), method, model, response.status_code, time.perf_counter() - started)
            when_sent(request.environ, response, partial(_observe, device, *facts))
        return response


def _observe(device: torch.device | None, endpoint: str, method: str, model: str, status: int, seconds: float) -> None:
    record_request(endpoint, method, model, status, seconds)
    update_process_gauges(device)
