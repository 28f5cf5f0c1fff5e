"""gunicorn's gthread worker, with one change to its keep-alive path (see ThreadWorker)."""
from __future__ import annotations

import select

from gunicorn.workers import gthread

#: How long a thread that has just answered waits for the same client's next request. A client on a
#: keep-alive connection sends it within a millisecond or two of reading the answer.
LINGER_MS = 2


class ThreadWorker(gthread.ThreadWorker):
    """gthread hands every answered keep-alive connection back to its poller thread: a pipe write, two
    wake-ups of that thread, two epoll_ctl calls and a thread-pool submit per request. Here the thread
    that answered waits up to LINGER_MS for the client's next request and serves it itself, but only
    while no other connection is waiting for a thread, so lingering never delays anyone by more than
    LINGER_MS. Everything else (accept, timeouts, worker recycling, graceful stop, HTTP/2) is gthread's."""

    def handle(self, conn):
        keepalive = super().handle(conn)
        while (keepalive is True and self.alive and not getattr(conn, "is_http2", False)
               and self._next_request_ready(conn)):
            keepalive = super().handle(conn)
        return keepalive

    def _next_request_ready(self, conn) -> bool:
        read_ahead = getattr(getattr(conn.parser, "unreader", None), "buf", None)
        if read_ahead is not None and read_ahead.getvalue():  # bytes read with the previous body
            return True
        work_queue = getattr(self.tpool, "_work_queue", None)
        if work_queue is None or not work_queue.empty():  # others are waiting for a thread
            return False
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(LINGER_MS))
