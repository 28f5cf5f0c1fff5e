"""gunicorn's gthread worker, with two changes to its hot path: keep-alive connections stay with the thread that
answered them, and a response's header block leaves in the same packet as its body (see ThreadWorker)."""

from __future__ import annotations

import select
import socket
from typing import Any

import gunicorn
from gunicorn import http
from gunicorn.workers import gthread

#: How long a thread that has just answered waits for the same client's next request. A client on a
#: keep-alive connection sends it within a millisecond or two of reading the answer.
LINGER_MS = 2


def fast_path_problems(worker: Any) -> list[str]:
    """What gthread no longer has of the internals the linger path relies on (empty: the fast path can run)."""
    problems = []
    if not callable(getattr(gthread.ThreadWorker, "handle", None)):
        problems.append("gthread.ThreadWorker.handle(conn) is gone, so ThreadWorker.handle is never called")
    if not callable(getattr(getattr(worker.tpool, "_work_queue", None), "empty", None)):
        problems.append("the thread pool has no _work_queue to tell whether connections wait for a thread")
    try:
        with socket.socket() as probe:
            read_ahead = http.get_parser(worker.cfg, probe, None).unreader.buf
    except Exception as error:  # noqa: BLE001 - any change of shape means the same: no fast path
        read_ahead = error
    if not callable(getattr(read_ahead, "getvalue", None)):
        problems.append(f"the HTTP parser has no unreader.buf of bytes read ahead ({read_ahead!r})")
    return problems


class CoalescingSocket:
    """A connection's socket for one request: gunicorn sends the header block with a sendall of its own, then the
    body with another, which on loopback or a LAN is two TCP segments, two trips through the network stack and two
    wake-ups of the client. The header block (when the body must follow it) is held here and sent in the body's
    sendall; anything else done with the socket sends it first, and `flush` sends whatever is still held."""

    __slots__ = ("_sock", "_held", "_first")

    def __init__(self, sock: socket.socket) -> None:
        self._sock, self._held, self._first = sock, b"", True

    def sendall(self, data: bytes, *flags: int) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        elif self._first and body_follows(data):
            self._first, self._held = False, data
            return
        self._first = False
        self._sock.sendall(data, *flags)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._sock.sendall(held)

    def __getattr__(self, name: str) -> Any:
        """Every other use (sendfile, send, shutdown, close, fileno...) sees the header block already sent."""
        self._first = False
        self.flush()
        return getattr(self._sock, name)


def body_follows(data: bytes) -> bool:
    """A whole header block that announces a non-empty body (Content-Length > 0; a chunked body's first chunk)."""
    if not data.startswith(b"HTTP/1.") or not data.endswith(b"\r\n\r\n") or len(data) > 65536:
        return False
    head = data.lower()
    if b"\r\ntransfer-encoding: chunked\r\n" in head:
        return True
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        return False
    value = head[start + 17 : head.index(b"\r\n", start + 17)].strip()
    return value.isdigit() and int(value) > 0


class ThreadWorker(gthread.ThreadWorker):
    """gthread hands every answered keep-alive connection back to its poller thread: a pipe write, two
    wake-ups of that thread, two epoll_ctl calls and a thread-pool submit per request. Here the thread
    that answered waits up to LINGER_MS for the client's next request and serves it itself, but only
    while no other connection is waiting for a thread, so lingering never delays anyone by more than
    LINGER_MS. Each request served that way (and answered keep-alive) counts in ai_service_keepalive_reused_total.
    A response to anything but HEAD writes through a CoalescingSocket (header block and body in one sendall).
    Everything else (accept, timeouts, worker recycling, graceful stop, HTTP/2) is gthread's."""

    #: Set by run() once the self-check passed; off, this worker is plain gthread.
    fast_path = False
    _reused: Any = None

    def run(self) -> None:
        """Check, in the worker with its thread pool built, that the fast path can run; then gthread's loop."""
        problems = fast_path_problems(self)
        if problems:
            self.log.warning(
                "keep-alive fast path off, serving as plain gthread (gunicorn %s changed shape): %s",
                gunicorn.__version__,
                "; ".join(problems),
            )
        else:
            from ai_service.observability.metrics import KEEPALIVE_REUSED  # after fork, the app already imported it

            self._reused, self.fast_path = KEEPALIVE_REUSED, True
        super().run()

    def handle(self, conn):
        keepalive = super().handle(conn)
        while (
            self.fast_path
            and keepalive is True
            and self.alive
            and not getattr(conn, "is_http2", False)
            and self._next_request_ready(conn)
        ):
            keepalive = super().handle(conn)
            if keepalive is True:  # a request served (not a client that closed while we lingered)
                self._reused.inc()
        return keepalive

    def handle_request(self, req, conn):
        if not self.fast_path or req.method == "HEAD" or getattr(conn, "is_http2", False):
            return super().handle_request(req, conn)
        real = conn.sock
        conn.sock = coalescing = CoalescingSocket(real)
        try:
            return super().handle_request(req, conn)
        finally:
            conn.sock = real
            try:
                coalescing.flush()  # a body that never came: the header block alone, as gunicorn would have sent it
            except OSError:
                pass  # the client left; gunicorn's own error handling has already run or runs next

    def _next_request_ready(self, conn) -> bool:
        if conn.parser.unreader.buf.getvalue():  # bytes read with the previous body
            return True
        if not self.tpool._work_queue.empty():  # others are waiting for a thread
            return False
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(LINGER_MS))
