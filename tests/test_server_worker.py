"""ai_service's gthread worker: a thread that answered a keep-alive request serves the same client's next
one itself, and never at the expense of another connection; ai_service_keepalive_reused_total shows it does
(plain gthread never moves it), and a gunicorn without the internals it reads gets a warning instead."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import requests
from gunicorn import http
from gunicorn.config import Config
from gunicorn.workers import gthread
from live_gunicorn import running_gunicorn

from ai_service.server.worker import ThreadWorker, fast_path_problems

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
#: Of 19 follow-up requests on one connection, how many the fast path must serve itself. Not all 19: on a
#: loaded machine the client may now and then take longer than LINGER_MS to send its next request.
LEAST_REUSED = 15


def read_response(stream) -> tuple[int, bytes]:
    """One HTTP/1.1 response from a buffered socket file: status and body (Content-Length framed)."""
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, stream.read(length)


def reused(server) -> float:
    """ai_service_keepalive_reused_total summed over the workers (0 before anything was counted)."""
    text = requests.get(server.base + "/metrics", timeout=10).text
    match = re.search(r"^ai_service_keepalive_reused_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def sequential_requests(server, count: int = 20) -> None:
    """`count` requests on one keep-alive connection, each sent once the previous answer arrived."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock, sock.makefile("rb") as stream:
        for _ in range(count):
            sock.sendall(REQUEST)
            assert read_response(stream)[0] == 200


def test_keepalive_connections_are_served_in_turn_pipelined_and_side_by_side(tmp_path):
    with running_gunicorn(tmp_path, workers=1, threads=1) as server:
        assert "ai_service.server.worker.ThreadWorker" in server.output()
        assert "fast path off" not in server.output()
        before = reused(server)
        sequential_requests(server)
        assert reused(server) - before >= LEAST_REUSED  # the fast path served them, not gthread's poller
        first = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        second = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with first, second, first.makefile("rb") as first_in, second.makefile("rb") as second_in:
            for _ in range(20):  # one connection, request after request: each answered on the same socket
                first.sendall(REQUEST)
                assert read_response(first_in)[0] == 200
            first.sendall(REQUEST * 3)  # pipelined: the next requests are already read ahead
            assert [read_response(first_in)[0] for _ in range(3)] == [200, 200, 200]
            # One thread only: it may be lingering on `first` (now quiet), yet `second` is answered, and
            # `first` still is afterwards (it went back to the poller).
            for _ in range(5):
                second.sendall(REQUEST)
                assert read_response(second_in)[0] == 200
            first.sendall(REQUEST)
            assert read_response(first_in)[0] == 200
        closing = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with closing, closing.makefile("rb") as closing_in:
            closing.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            assert read_response(closing_in)[0] == 200
            assert closing_in.read() == b""  # closed by the server, not kept for another request


def test_plain_gthread_counts_no_reuse(tmp_path):
    """The counter above measures the fast path: gunicorn's own gthread worker never moves it."""
    with running_gunicorn(tmp_path, workers=1, threads=1, gunicorn_args=("--worker-class", "gthread")) as server:
        assert "ai_service.server.worker.ThreadWorker" not in server.output()
        sequential_requests(server)
        assert reused(server) == 0


def test_self_check_passes_on_this_gunicorn_and_names_what_changed(monkeypatch):
    with ThreadPoolExecutor(1) as pool:
        assert fast_path_problems(SimpleNamespace(tpool=pool, cfg=Config())) == []
        monkeypatch.delattr(gthread.ThreadWorker, "handle")
        monkeypatch.setattr(http, "get_parser", lambda cfg, source, address: SimpleNamespace())
        problems = fast_path_problems(SimpleNamespace(tpool=object(), cfg=Config()))
    assert len(problems) == 3
    assert "handle" in problems[0] and "_work_queue" in problems[1] and "unreader.buf" in problems[2]


def test_a_worker_whose_gunicorn_changed_shape_warns_and_serves_as_plain_gthread(monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(gthread.ThreadWorker, "run", lambda self: None)  # not the serving loop
    worker = ThreadWorker.__new__(ThreadWorker)
    worker.tpool, worker.cfg = object(), Config()
    worker.log = SimpleNamespace(warning=lambda message, *args: warnings.append(message % args))
    worker.run()
    assert not worker.fast_path
    assert len(warnings) == 1 and "fast path off" in warnings[0] and "_work_queue" in warnings[0]
