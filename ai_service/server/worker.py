"""gunicorn's gthread worker, with one change to its keep-alive path (see ThreadWorker)."""

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


class ThreadWorker(gthread.ThreadWorker):
    """gthread hands every answered keep-alive connection back to its poller thread: a pipe write, two
    wake-ups of that thread, two epoll_ctl calls and a thread-pool submit per request. Here the thread
    that answered waits up to LINGER_MS for the client's next request and serves it itself, but only
    while no other connection is waiting for a thread, so lingering never delays anyone by more than
    LINGER_MS. Everything else (accept, timeouts, worker recycling, graceful stop, HTTP/2) is gthread's.
    Each request served that way (and answered keep-alive) counts in ai_service_keepalive_reused_total."""

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

    def _next_request_ready(self, conn) -> bool:
        if conn.parser.unreader.buf.getvalue():  # bytes read with the previous body
            return True
        if not self.tpool._work_queue.empty():  # others are waiting for a thread
            return False
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(LINGER_MS))
