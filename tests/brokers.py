"""Real brokers for job tests: a private database of the shared Redis, a private RabbitMQ vhost, a private
redis-server a fault test may kill and restart, and `ai-service worker` processes started as subprocesses.

Shared brokers are the loopback ones CI starts (.ci/run); point elsewhere with AI_SERVICE_TEST_REDIS_HOST/PORT and
AI_SERVICE_TEST_RABBITMQ_HOST/PORT. A missing broker or binary is a failure under CI=true and a skip elsewhere
(tests/databases.py's `unavailable`).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import redis
from databases import free_port, unavailable

ROOT = Path(__file__).resolve().parents[1]
REDIS_HOST = os.environ.get("AI_SERVICE_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("AI_SERVICE_TEST_REDIS_PORT", "6379"))
RABBITMQ_HOST = os.environ.get("AI_SERVICE_TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_PORT = int(os.environ.get("AI_SERVICE_TEST_RABBITMQ_PORT", "5672"))
REDIS_SERVER = os.environ.get("AI_SERVICE_TEST_REDIS_SERVER", "redis-server")
RABBITMQCTL = os.environ.get("AI_SERVICE_TEST_RABBITMQCTL", "rabbitmqctl")
#: Marks a Redis database as taken by one test (other tests and helpers skip a database that has any key).
CLAIM_KEY = "ai_service_test:claimed"
START_TIMEOUT_S = 30.0
#: How long a worker may take to import torch, connect and report ready on a busy 2-core machine.
WORKER_READY_TIMEOUT_S = 60.0


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll until `condition()` is truthy; fail naming `what` after `timeout` seconds (no test waits unbounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def redis_database() -> Iterator[str]:
    """A broker URL on an empty database of the shared Redis, claimed for this test and emptied afterwards."""
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=3).ping()
    except redis.RedisError as error:
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT} does not answer ({error})")
    for number in random.sample(range(1, 16), 15):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=3)
        if client.set(CLAIM_KEY, os.getpid(), nx=True, ex=3600):
            if client.dbsize() == 1:
                break
            client.delete(CLAIM_KEY)  # someone else's keys are there: leave that database alone
        client.close()
    else:
        raise AssertionError(f"every database of Redis at {REDIS_HOST}:{REDIS_PORT} holds keys; none is free")
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{number}"
    finally:
        client.flushdb()
        client.close()


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run([RABBITMQCTL, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A broker URL on a fresh vhost of the shared RabbitMQ (guest/guest), deleted with its queues afterwards."""
    if not port_open(RABBITMQ_HOST, RABBITMQ_PORT):
        unavailable(f"RabbitMQ at {RABBITMQ_HOST}:{RABBITMQ_PORT} does not answer")
    if shutil.which(RABBITMQCTL) is None:
        unavailable(f"{RABBITMQCTL} is not installed (it creates a vhost per test)")
    vhost = f"ai_test_{secrets.token_hex(6)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


class PrivateRedis:
    """A redis-server of this test alone, on a free port, that the test may kill and start again.

    Append-only file, fsync'd on every write: what the broker accepted (queued chunks, the unacknowledged ones) is
    still there after a crash, as on a broker configured for durable queues. Without persistence a restart would
    drop every queued chunk and the job would wait for ever.
    """

    def __init__(self) -> None:
        if shutil.which(REDIS_SERVER) is None:
            unavailable(f"{REDIS_SERVER} is not installed (the broker restart test runs its own)")
        self.root = Path(tempfile.mkdtemp(prefix="ai_redis_"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again) on the same port and directory; returns once it answers PING."""
        command = [
            REDIS_SERVER,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"),
        ]
        with open(self.root / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=1)

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {(self.root / 'redis.log').read_text()[-2000:]}")
            with suppress(redis.RedisError):
                return bool(client.ping())
            return False

        wait_for(answers, START_TIMEOUT_S, f"redis-server on port {self.port}")
        client.close()

    def kill(self) -> None:
        """Crash it (SIGKILL): connections drop, nothing is shut down cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A started private redis-server, killed and removed afterwards whatever the test did."""
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


class Worker:
    """One `ai-service worker` process (python -m ai_service.cli worker), its log in a file a failing test prints."""

    def __init__(self, name: str, env: Mapping[str, str], log: Path, *args: str) -> None:
        self.name = name
        self.log = log
        self.terminated = False
        command = [sys.executable, "-m", "ai_service.cli", "worker", "--hostname", f"{name}@%h", *args]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(  # its own process group: freeze() stops the pool's children too
                command,
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT_S) -> None:
        """Until Celery reports the worker connected and consuming."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited {self.process.returncode}:\n{self.output()[-4000:]}")
            return " ready." in self.output()

        wait_for(ready, timeout, f"worker {self.name} to be ready", interval=0.1)

    def freeze(self) -> None:
        """SIGSTOP the worker and its children: what it has written stays as it is while a test looks."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the worker (its prefork children die with it: Celery sets their parent-death signal)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM: finish the running chunk) without waiting; once."""
        if self.process.poll() is None and not self.terminated:
            self.process.terminate()
            self.terminated = True

    def stop(self, timeout: float = 20.0) -> int | None:
        """Warm shutdown, then SIGKILL if it hangs; returns the exit status."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode
