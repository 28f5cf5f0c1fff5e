"""The production server: gunicorn gthread workers sharing the core budget, batching concurrent requests."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image
from test_e2e_gunicorn import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def test_two_workers_share_the_cores_and_serve_concurrent_requests(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "AI_SERVICE_HOME": str(tmp_path / "home"),
        "AI_SERVICE_BIND": f"127.0.0.1:{port}",
        "AI_SERVICE_WORKERS": "2",
        "AI_SERVICE_THREADS": "4",
        "AI_SERVICE_PRELOAD": "digits",
        "AI_SERVICE_LOG_TO_FILE": "0",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-c", str(ROOT / "gunicorn.conf.py"), "--pythonpath", str(ROOT), "app:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, "gunicorn exited early"
            try:
                if requests.get(base + "/api/v1/health", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        buffer = io.BytesIO()
        Image.new("L", (64, 64), 255).save(buffer, "PNG")

        def send(_: int) -> requests.Response:
            return requests.post(
                base + "/api/v1/predict",
                files={"file": ("white.png", buffer.getvalue())},
                data={"model": "digits", "cache": "off"},  # the same image 24 times: the engine, not the cache
                timeout=60,
            )

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(send, range(24)))
        assert all(response.status_code == 200 for response in responses), responses[0].text
        bodies = [response.json() for response in responses]
        assert all(1 <= body["batch_size"] <= 8 and "queue" in body["timing_ms"] for body in bodies)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    slots = sorted(re.findall(r"core budget slot (\d)", output))
    assert slots == ["0", "1"], output[-2000:]
