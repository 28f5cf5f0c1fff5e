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

from ai_service.server.worker import CoalescingSocket, ThreadWorker, body_follows, fast_path_problems

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


class RecordingSocket:
    """What a socket was asked to send, one entry per sendall."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def fileno(self) -> int:
        return 7


HEAD_5 = b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nContent-Length: 5\r\n\r\n"


def test_the_header_block_leaves_with_the_body_in_one_send():
    sock = RecordingSocket()
    coalescing = CoalescingSocket(sock)
    coalescing.sendall(HEAD_5)
    assert sock.sent == []  # held: the body follows
    coalescing.sendall(b"hello")
    assert sock.sent == [HEAD_5 + b"hello"]
    coalescing.sendall(b"more")  # later writes go straight through
    coalescing.flush()
    assert sock.sent == [HEAD_5 + b"hello", b"more"]


def test_headers_without_a_body_to_wait_for_are_sent_at_once():
    for head in (
        b"HTTP/1.1 204 No Content\r\nServer: gunicorn\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",  # not a whole header block
        b"not a status line\r\nContent-Length: 5\r\n\r\n",
    ):
        sock = RecordingSocket()
        CoalescingSocket(sock).sendall(head)
        assert sock.sent == [head]
    assert body_follows(b"HTTP/1.1 200 OK\r\ncontent-length:  12 \r\n\r\n")
    assert body_follows(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")


def test_anything_else_done_with_the_socket_sends_the_held_headers_first():
    sock = RecordingSocket()
    coalescing = CoalescingSocket(sock)
    coalescing.sendall(HEAD_5)
    assert coalescing.fileno() == 7  # e.g. sendfile, shutdown, close
    assert sock.sent == [HEAD_5]
    sock = RecordingSocket()
    coalescing = CoalescingSocket(sock)
    coalescing.sendall(HEAD_5)
    coalescing.flush()  # the worker's end of request: a body that never came
    coalescing.flush()
    assert sock.sent == [HEAD_5]


def test_a_live_worker_answers_whole_responses_through_it(tmp_path):
    """Bodies of every size and HEAD (which the wrapper leaves alone) arrive intact on one keep-alive connection."""
    with running_gunicorn(tmp_path, workers=1, threads=2) as server:
        with requests.Session() as session:
            for _ in range(3):
                health = session.get(server.base + "/healthz", timeout=10)
                assert health.status_code == 200 and health.content
                spec = session.get(server.base + "/api/v1/openapi.json", timeout=10)
                assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.")
                assert int(spec.headers["Content-Length"]) == len(spec.content) > 65536 // 4
                head = session.head(server.base + "/healthz", timeout=10)
                assert head.status_code == 200 and head.content == b""
