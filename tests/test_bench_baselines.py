"""The serving benchmark's plain Flask baselines run as described: stock gunicorn with the worker they name.

Started from the repository root, gunicorn read ai_service's gunicorn.conf.py, whose `threads` turned `-k sync`
into gthread and whose post_fork gave the "plain" app ai_service's own process tuning; the benchmark compared
against that hybrid until 2026-11-28. bench/serving.py now starts baselines in bench/baselines and refuses one
whose master does not log the worker it is described with.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import serving  # noqa: E402 - bench/ is not a package


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-home")
    serving.prepare_home(folder)
    return folder


@pytest.mark.parametrize(("name", "worker"), [("plain", "sync"), ("plain-gthread", "gthread")])
def test_plain_baseline_runs_stock_gunicorn_with_its_worker(home: Path, tmp_path: Path, name: str, worker: str):
    server = next(s for s in serving.servers(home, litserve=False) if s.name == name)
    assert server.worker == worker and server.cwd == serving.BASELINES
    log = tmp_path / "server.log"
    server.start(log, timeout=120)
    try:
        with urllib.request.urlopen(server.url("digits").replace("/predict", "/health"), timeout=10) as response:
            assert response.status == 200
        text = log.read_text()
        assert f"[{server.process.pid}] [INFO] Using worker: {worker}" in text
        assert "core budget" not in text and "process configured" not in text  # none of ai_service's post_fork
    finally:
        server.stop()


def test_a_baseline_that_runs_another_worker_is_refused(home: Path, tmp_path: Path):
    server = next(s for s in serving.servers(home, litserve=False) if s.name == "plain")
    server.cwd = ROOT  # where gunicorn picks up ai_service's gunicorn.conf.py: sync becomes gthread
    server.command[-1:-1] = ["--chdir", str(serving.BASELINES)]  # as the benchmark started them before
    with pytest.raises(RuntimeError, match="does not run gunicorn's sync worker"):
        server.start(tmp_path / "server.log", timeout=120)
    assert server.process.poll() is not None
