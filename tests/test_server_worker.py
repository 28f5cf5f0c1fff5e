"""ai_service's gthread worker: a thread that answered a keep-alive request serves the same client's next
one itself, and never at the expense of another connection."""
from __future__ import annotations

import socket

from live_gunicorn import running_gunicorn

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


def read_response(stream) -> tuple[int, bytes]:
    """One HTTP/1.1 response from a buffered socket file: status and body (Content-Length framed)."""
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, stream.read(length)


def test_keepalive_connections_are_served_in_turn_pipelined_and_side_by_side(tmp_path):
    with running_gunicorn(tmp_path, workers=1, threads=1) as server:
        assert "ai_service.server.worker.ThreadWorker" in server.output()
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
