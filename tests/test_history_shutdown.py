"""Graceful shutdown under real gunicorn writes the history rows still queued: SIGTERM loses no prediction."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from tests.conftest import encode
from tests.live_gunicorn import running_gunicorn


def test_sigterm_flushes_the_queue_of_every_worker(tmp_path):
    """Rows wait 30 s for company (history_flush_ms), so only the shutdown flush can have written them."""
    payload = encode(Image.new("L", (24, 24), 128))
    with running_gunicorn(tmp_path, workers=2, threads=4, history_flush_ms=30_000, history_batch_size=10_000) as server:
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda i: requests.post(
                        server.base + "/api/v1/predict", files={"file": (f"{i}.png", payload)}, timeout=30
                    ),
                    range(40),
                )
            )
        assert [answer.status_code for answer in answers] == [200] * 40
        ids = {answer.json()["results"][0]["history_id"] for answer in answers}
        database = server.home / "var" / "ai_service.db"
        with sqlite3.connect(database) as connection:
            assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0  # all still queued
        assert server.stop() == 0
    with sqlite3.connect(database) as connection:
        written = {row[0] for row in connection.execute("SELECT id FROM predictions")}
    assert written == ids
