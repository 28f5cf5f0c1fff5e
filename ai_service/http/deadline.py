"""A deadline for receiving the whole request body, so a client that trickles bytes cannot hold a
gunicorn request thread forever: past `AI_SERVICE_BODY_TIMEOUT` seconds its reads fail with 408 and
the connection is closed after the answer. Only under gunicorn (it exposes the socket); nginx's
request buffering in front is the first line of defence.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.exceptions import RequestTimeout


class BodyTimeout(RequestTimeout):
    """The body did not arrive within `body_timeout` seconds (a slow or stalled client)."""


class BodyWatchdog:
    """One thread per worker that hangs up the read side of sockets whose body is overdue.

    A per-read socket timeout cannot stop a client that sends one byte every few seconds (each read
    succeeds); shutting down the read side makes the blocked read return at once, wherever it is."""

    INTERVAL = 0.25

    def __init__(self) -> None:
        self._watched: set[DeadlineInput] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, stream: DeadlineInput) -> None:
        with self._lock:
            self._watched.add(stream)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="body-watchdog", daemon=True)
                self._thread.start()

    def forget(self, stream: DeadlineInput) -> None:
        with self._lock:
            self._watched.discard(stream)

    def _run(self) -> None:
        while True:
            time.sleep(self.INTERVAL)
            now = time.monotonic()
            with self._lock:
                overdue = [stream for stream in self._watched if now >= stream.deadline]
                self._watched.difference_update(overdue)
            for stream in overdue:
                stream.expire()


WATCHDOG = BodyWatchdog()


class DeadlineInput:
    """`wsgi.input` whose reads fail with 408 once the body has taken longer than `seconds` to arrive."""

    def __init__(self, stream: Any, sock: socket.socket, seconds: float, length: int | None) -> None:
        self.stream, self.sock, self.seconds, self.remaining = stream, sock, seconds, length
        self.deadline = time.monotonic() + seconds
        self.expired = False
        WATCHDOG.watch(self)

    def expire(self) -> None:
        """Called by the watchdog: unblock any read in progress by closing our receiving side."""
        self.expired = True
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _timeout(self) -> BodyTimeout:
        return BodyTimeout(
            f"The request body did not arrive within {self.seconds:g} s; send it faster or through a buffering proxy."
        )

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        if self.expired:
            raise self._timeout()
        try:
            data = method(*args)
        except Exception:
            if self.expired:
                raise self._timeout() from None
            raise
        if self.expired:
            raise self._timeout()
        if self.remaining is not None and isinstance(data, bytes):
            self.remaining -= len(data)
        if not data or self.remaining == 0:
            WATCHDOG.forget(self)  # the whole body is here: a slow view must not cut the connection
        return data

    def read(self, size: int | None = None) -> bytes:
        return self._call(self.stream.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._call(self.stream.readline, size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return self._call(self.stream.readlines, hint)

    def __iter__(self):
        return iter(self.readline, b"")


class ClosingBody:
    """Response iterable that stops watching at the end and hangs up when the body deadline expired."""

    def __init__(self, body: Iterable[bytes], stream: DeadlineInput) -> None:
        self.body, self.stream = body, stream

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        WATCHDOG.forget(self.stream)
        if hasattr(self.body, "close"):
            self.body.close()
        if self.stream.expired:
            try:
                self.stream.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class BodyDeadlineMiddleware:
    """Wrap gunicorn's request body with a deadline; other servers (tests, dev) pass through untouched.

    `slow_paths` maps a path that takes large bodies (bulk jobs) to the slowest upload rate it allows, in bytes per
    second: its deadline grows with the declared Content-Length, so a big archive on a plain link is not cut off,
    while a client that declares few bytes and trickles them still is."""

    def __init__(self, app: Callable, seconds: float, slow_paths: Mapping[str, float] | None = None) -> None:
        self.app, self.seconds, self.slow_paths = app, seconds, dict(slow_paths or {})

    def deadline(self, path: str, length: int | None) -> float:
        """Seconds this request's body may take: the app-wide deadline, plus time for its size on a slow path."""
        rate = self.slow_paths.get(path)
        return self.seconds + length / rate if rate and length else self.seconds

    def __call__(self, environ: dict, start_response: Callable):
        sock = environ.get("gunicorn.socket")
        has_body = (
            environ.get("CONTENT_LENGTH") not in (None, "", "0")
            or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        )
        if sock is None or not has_body or self.seconds <= 0:
            return self.app(environ, start_response)
        header = environ.get("CONTENT_LENGTH")
        length = int(header) if header and header.isdigit() else None
        seconds = self.deadline(environ.get("PATH_INFO", ""), length)
        stream = DeadlineInput(environ["wsgi.input"], sock, seconds, length)
        environ["wsgi.input"] = stream
        try:
            return ClosingBody(self.app(environ, start_response), stream)
        except BaseException:
            WATCHDOG.forget(stream)
            raise
