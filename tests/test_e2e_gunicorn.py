"""End to end: real gunicorn (the production config) on a free loopback port, real uploads over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import digit_variants

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn from an unrelated working directory, stopped with SIGTERM after the module."""
    workdir = tmp_path_factory.mktemp("elsewhere")
    port = free_port()
    env = {
        **os.environ,
        "AI_SERVICE_HOME": str(workdir / "home"),
        "AI_SERVICE_BIND": f"127.0.0.1:{port}",
        "AI_SERVICE_WORKERS": "2",
        "AI_SERVICE_THREADS": "4",
        "AI_SERVICE_MAX_UPLOAD_MB": "2",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-c", str(ROOT / "gunicorn.conf.py"), "--pythonpath", str(ROOT), "app:app"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("gunicorn exited early:\n" + process.stdout.read().decode(errors="replace"))
        try:
            if requests.get(base + "/api/v1/health", timeout=5).ok:
                break
        except requests.RequestException:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("gunicorn did not answer within 90 s")
    yield base, workdir
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]


def test_digits_predicted_over_http(server, digits_split):
    from ai_service.client import Client

    base, _ = server
    client = Client(base, timeout=30)
    checked = 0
    for index in range(0, 40, 4):
        label = str(digits_split.test_labels[index])
        for data, _mime in digit_variants(digits_split.test_images[index]).values():
            [result] = client.predict(data, model="digits", top_k=2).results
            assert len(result.predictions) == 2
            checked += result.predictions[0].label == label
    assert checked >= 48  # 10 digits × 5 variants; allow two misreads of the hardest renders


def test_errors_over_http(server):
    base, _ = server
    cases = [
        ({"files": {"file": ("a.png", b"", "image/png")}}, 400, "empty_file"),
        ({"files": {"file": ("a.png", b"text pretending", "image/png")}}, 415, "unsupported_format"),
        ({"data": {"model": "digits"}}, 415, "unsupported_media_type"),  # urlencoded cannot carry a file
        ({"files": {"image": ("a.png", b"x", "image/png")}}, 400, "missing_file"),
        (
            {"files": {"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (3 * 1024 * 1024), "image/png")}},
            413,
            "payload_too_large",
        ),
    ]
    for kwargs, status, code in cases:
        response = requests.post(base + "/api/v1/predict", timeout=30, **kwargs)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert requests.get(base + "/api/v1/health", timeout=5).ok


def test_request_id_and_logs_under_home(server):
    base, workdir = server
    response = requests.get(base + "/api/v1/health", headers={"X-Request-ID": "e2e-req-1"}, timeout=5)
    assert response.headers["X-Request-ID"] == "e2e-req-1"
    assert response.json()["device"]["device"] == "cpu"
    log_file = workdir / "home" / "logs" / "ai_service.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "e2e-req-1" not in log_file.read_text():
        time.sleep(0.1)
    text = log_file.read_text()
    assert "e2e-req-1" in text and "Booting worker" in text  # gunicorn's own lines go through loguru


def test_upload_page_and_static_assets(server):
    base, _ = server
    page = requests.get(base + "/", timeout=5)
    assert page.ok and "<form" in page.text
    assert requests.get(base + "/static/app.js", timeout=5).ok
