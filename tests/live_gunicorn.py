"""Start the production gunicorn config on a free loopback port for hostile, lifecycle and metrics tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers), from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(item) for item in text.split())


def rss_bytes(pid: int) -> int:
    """Resident memory of a process in bytes (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class LiveServer:
    base: str
    port: int
    process: subprocess.Popen
    home: Path
    log_path: Path

    def workers(self) -> list[int]:
        return child_pids(self.process.pid)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_workers(self, count: int, timeout: float = 60.0, exclude: tuple[int, ...] = ()) -> list[int]:
        """Wait until `count` workers (none of `exclude`) are up and the service answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [pid for pid in self.workers() if pid not in exclude]
            if len(pids) >= count:
                return pids
            time.sleep(0.2)
        raise AssertionError(f"expected {count} workers, have {self.workers()}\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful), SIGKILL after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def running_gunicorn(
    workdir: Path, workers: int = 2, threads: int = 4, gunicorn_args: tuple[str, ...] = (), **settings: object
) -> Iterator[LiveServer]:
    """gunicorn -c gunicorn.conf.py [gunicorn_args] app:app with AI_SERVICE_* settings; stopped (SIGTERM) at exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AI_SERVICE_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {
            "AI_SERVICE_HOME": str(workdir / "home"),
            "AI_SERVICE_BIND": f"127.0.0.1:{port}",
            "AI_SERVICE_WORKERS": str(workers),
            "AI_SERVICE_THREADS": str(threads),
            "AI_SERVICE_LOG_TO_FILE": "0",
        }
    )
    env.update({f"AI_SERVICE_{key.upper()}": str(value) for key, value in settings.items()})
    log_path = workdir / "gunicorn.out"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(gunicorn), "-c", str(ROOT / "gunicorn.conf.py"), "--pythonpath", str(ROOT), *gunicorn_args, "app:app"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, process, workdir / "home", log_path)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError("gunicorn exited early:\n" + server.output()[-4000:])
            try:
                if requests.get(server.base + "/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"gunicorn not ready within {START_SECONDS} s:\n" + server.output()[-4000:])
            time.sleep(0.2)
        server.wait_for_workers(workers)
        yield server
    finally:
        server.stop()
