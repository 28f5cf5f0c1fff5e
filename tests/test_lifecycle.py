"""gunicorn lifecycle with the production config: graceful drain on SIGTERM, worker replacement after
SIGKILL, max_requests recycling, metrics that add up across workers, timeouts tied to the request limit, and
CUDA out-of-memory during a batch (split, retry, then 503 + Retry-After with the worker still healthy)."""

from __future__ import annotations

import gc
import io
import os
import runpy
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import encode
from live_gunicorn import ROOT, running_gunicorn
from PIL import Image
from test_metrics import samples, value

pytestmark = pytest.mark.e2e
PREDICT = "/api/v1/predict"


@pytest.fixture(scope="module")
def seven_png(digits_split) -> bytes:
    from ai_service.models.builtin.digits_training import render_digit

    index = int(list(digits_split.test_labels).index(7))
    return encode(render_digit(digits_split.test_images[index], 64))


def label_of(response: requests.Response) -> str:
    body = response.json()
    return (body["results"][0] if "results" in body else body)["predictions"][0]["label"]


def predict(base: str, png: bytes, session: requests.Session | None = None) -> requests.Response:
    return (session or requests).post(base + PREDICT, files={"file": ("seven.png", png, "image/png")}, timeout=30)


def test_gunicorn_config_follows_the_settings(monkeypatch, tmp_path):
    """Worker timeout outlasts the longest allowed inference, recycling is configurable, stale metrics go."""
    monkeypatch.setenv("AI_SERVICE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AI_SERVICE_REQUEST_TIMEOUT_S", "45")
    monkeypatch.setenv("AI_SERVICE_MAX_REQUESTS", "1234")
    monkeypatch.setenv("AI_SERVICE_MAX_REQUESTS_JITTER", "99")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    try:
        config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))  # sets PROMETHEUS_MULTIPROC_DIR for its workers
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "counter_12345.db").write_bytes(b"stale samples of a previous run")
        config["on_starting"](None)
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # only gunicorn's workers should have it
    assert folder == tmp_path / "home" / "var" / "prometheus"
    assert folder.is_dir() and not any(folder.iterdir())
    assert config["timeout"] >= 45 + 10 and config["graceful_timeout"] >= 45
    assert (config["max_requests"], config["max_requests_jitter"]) == (1234, 99)
    config["post_worker_init"](None)  # the app is built: the heap that exists now leaves the collector's reach
    try:
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_sigterm_drains_in_flight_requests(tmp_path, seven_png):
    """A request still uploading when SIGTERM arrives is answered in full; then gunicorn exits 0."""
    body_head = b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n\r\n'
    body = body_head + seven_png + b"\r\n--b0undary--\r\n"
    with running_gunicorn(tmp_path, workers=1, threads=2, preload="digits") as server:
        head = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b0undary"
            f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(head + body[:40])
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            for start in range(40, len(body), max(1, len(body) // 10)):  # ~1 s more of trickling
                time.sleep(0.1)
                sock.sendall(body[start : start + max(1, len(body) // 10)])
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
        assert b'"label":"7"' in reply.replace(b" ", b"")
        assert server.process.wait(timeout=60) == 0
        assert "Handling signal: term" in server.output()


def test_killed_worker_is_replaced_and_the_others_keep_serving(tmp_path, seven_png):
    with running_gunicorn(tmp_path, workers=2, threads=4, preload="digits") as server:
        before = server.workers()
        stop, outcomes = threading.Event(), []

        def client() -> None:
            session = requests.Session()
            while not stop.is_set():
                started = time.monotonic()
                try:
                    ok = predict(server.base, seven_png, session).status_code == 200
                except requests.RequestException:
                    ok, session = False, requests.Session()
                outcomes.append((started, time.monotonic(), ok))

        clients = [threading.Thread(target=client) for _ in range(4)]
        [thread.start() for thread in clients]
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.kill(before[0], signal.SIGKILL)
        after = server.wait_for_workers(2, exclude=(before[0],))
        time.sleep(1.5)
        stop.set()
        [thread.join(timeout=30) for thread in clients]
        assert before[1] in after and before[0] not in after
        failed = [(start, end) for start, end, ok in outcomes if not ok]
        assert all(start <= killed_at + 0.05 <= end + 0.1 for start, end in failed), (failed, killed_at)
        assert len(failed) <= 4  # at most the requests in flight on the killed worker
        assert sum(ok for start, _, ok in outcomes if start > killed_at + 0.1) > 10
        response = requests.get(server.base + "/readyz", timeout=5)
        assert response.status_code == 200


def test_max_requests_recycles_workers_without_dropping_requests(tmp_path, seven_png):
    with running_gunicorn(
        tmp_path, workers=1, threads=2, preload="digits", max_requests=10, max_requests_jitter=0
    ) as server:
        first = server.workers()
        session = requests.Session()
        labels = []
        for _ in range(35):
            try:
                labels.append(label_of(predict(server.base, seven_png, session)))
            except requests.ConnectionError:  # keep-alive socket closed by the retiring worker: new connection
                session = requests.Session()
                labels.append(label_of(predict(server.base, seven_png, session)))
        assert labels == ["7"] * 35
        assert set(server.workers()).isdisjoint(first)
        assert server.output().count("Autorestarting worker after current request") >= 3


def test_metrics_add_up_across_workers(tmp_path, seven_png):
    """Whichever worker answers the scrape, counters include every worker's requests, even a dead one's."""
    with running_gunicorn(tmp_path, workers=2, threads=4, preload="digits") as server:
        session = requests.Session()
        for _ in range(30):
            assert predict(server.base, seven_png, requests.Session()).status_code == 200
        assert requests.post(server.base + PREDICT, files={"file": ("x.png", b"")}, timeout=10).status_code == 400

        def scrape() -> dict:
            return samples(session.get(server.base + "/metrics", timeout=10).text)

        found = scrape()
        assert value(found, "ai_service_requests_total", endpoint=PREDICT, status="200") == 30
        assert value(found, "ai_service_requests_total", endpoint=PREDICT, status="400") == 1
        pids = {dict(labels)["pid"] for (name, labels), v in found.items() if name == "ai_service_worker_rss_bytes"}
        assert {str(pid) for pid in server.workers()} <= pids
        victim = server.workers()[0]
        os.kill(victim, signal.SIGKILL)
        server.wait_for_workers(2, exclude=(victim,))
        found = scrape()
        assert value(found, "ai_service_requests_total", endpoint=PREDICT, status="200") == 30
        pids = {dict(labels)["pid"] for (name, labels), v in found.items() if name == "ai_service_worker_rss_bytes"}
        assert str(victim) not in pids
        assert (server.home / "var" / "prometheus").is_dir()


# ---------------------------------------------------------------- CUDA out-of-memory during a batch


def out_of_memory() -> Exception:
    import torch

    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def run_batch(batcher, count: int) -> list:
    import torch

    with batcher.arrival(count) as arrival:
        tickets = arrival.submit([torch.full((1,), float(i)) for i in range(count)], time.perf_counter() + 30)
    batcher.wait(tickets, time.perf_counter() + 30)
    return tickets


def test_oom_batch_is_split_into_smaller_batches():
    from ai_service.engine import Batcher
    from ai_service.observability import metrics

    sizes = []

    def run(samples):
        sizes.append(len(samples))
        if len(samples) > 2:
            raise out_of_memory()
        return [sample * 2 for sample in samples]

    before = metrics.OOM_EVENTS.labels("oom-split", "split")._value.get()
    batcher = Batcher("oom-split", run, max_batch_size=8, max_delay_ms=0, max_queue=64)
    tickets = run_batch(batcher, 8)
    batcher.close()
    assert [ticket.error for ticket in tickets] == [None] * 8
    assert [float(ticket.output) for ticket in tickets] == [2.0 * i for i in range(8)]
    assert sizes[0] == 8 and max(sizes[1:]) <= 2 and sum(size for size in sizes if size <= 2) == 8
    assert metrics.OOM_EVENTS.labels("oom-split", "split")._value.get() > before


def test_oom_that_persists_fails_the_items_cleanly():
    from ai_service.engine import Batcher
    from ai_service.engine.batcher import DeviceOutOfMemory

    calls = []

    def run(samples):
        calls.append(len(samples))
        raise out_of_memory()

    batcher = Batcher("oom-always", run, max_batch_size=4, max_delay_ms=0, max_queue=64)
    tickets = run_batch(batcher, 4)
    batcher.close()
    assert all(isinstance(ticket.error, DeviceOutOfMemory) for ticket in tickets)
    assert calls[0] == 4 and calls.count(1) == 8  # each lone item: tried, cache freed, tried once more


def test_oom_answers_503_with_retry_after_and_the_worker_stays_healthy(home):
    import torch

    from ai_service import create_app
    from ai_service.models.base import Batch, ImageModel, ModelInfo, top_k_predictions

    class Greedy(ImageModel):
        """Fits one image at a time only when `fits` is set; otherwise every forward runs out of memory."""

        info = ModelInfo(name="greedy", input_size=(8, 8), input_mode="L", labels=("a", "b"))
        fits = False

        def load(self, device):
            self.device, self.network = device, torch.nn.Flatten()

        def preprocess(self, images, options):
            return Batch(torch.stack([torch.zeros(1, 8, 8) for _ in images]))

        def forward(self, batch):
            if not Greedy.fits or batch.shape[0] > 1:
                raise out_of_memory()
            return torch.zeros(batch.shape[0], 2)

        def postprocess(self, outputs, items, options):
            return top_k_predictions(outputs, self.info.labels, 1)

    app = create_app({"TESTING": True, "home": str(home), "log_to_file": False})
    app.extensions["ai_service"].registry.register(Greedy())
    client = app.test_client()
    png = encode(Image.new("L", (8, 8), 0))
    response = client.post(
        PREDICT, data={"file": [(io.BytesIO(png), "a.png"), (io.BytesIO(png), "b.png")], "model": "greedy"}
    )
    assert response.status_code == 503, response.data[:300]
    assert response.get_json()["error"]["code"] == "out_of_memory" and int(response.headers["Retry-After"]) >= 1
    assert client.get("/healthz").status_code == 200
    Greedy.fits = True  # memory freed up: the same two images now run one at a time
    response = client.post(
        PREDICT, data={"file": [(io.BytesIO(png), "a.png"), (io.BytesIO(png), "b.png")], "model": "greedy"}
    )
    assert response.status_code == 200 and len(response.get_json()["results"]) == 2
    assert client.post(PREDICT, data={"file": (io.BytesIO(png), "c.png")}).status_code == 200  # digits still fine
