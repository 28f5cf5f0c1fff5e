"""Loguru everywhere: console + rotating file, optional JSON lines, request ids, stdlib routed in."""

from __future__ import annotations

import atexit
import contextvars
import itertools
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from loguru import logger

from ai_service.server.log_relay import FileRelay, not_relayed

if TYPE_CHECKING:
    from flask import Flask

    from ai_service.settings import Settings

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
request_fields_var: contextvars.ContextVar[dict | None] = contextvars.ContextVar("request_fields", default=None)
CONSOLE_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "{process} | <cyan>{extra[request_id]}</cyan> | {name}:{line} - <level>{message}</level>"
)
STDLIB_LOGGERS = ("flask", "werkzeug", "gunicorn", "gunicorn.error", "gunicorn.access", "py.warnings")
_configured_for: tuple | None = None
_sink_ids: list[int] = [0]  # 0 is loguru's default stderr sink, replaced on first setup
_relay: FileRelay | None = None
_access_direct = False  # see write_access_line
INFO_NO = 20
_second: tuple[int, str] = (-1, "")  # the last whole second formatted for direct lines


class InterceptHandler(logging.Handler):
    """Send stdlib records (Flask, werkzeug, gunicorn) to loguru with the caller's location."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _add_request_id(record: dict) -> None:
    """Stamp every line with the request id of the request being served (or '-')."""
    record["extra"].setdefault("request_id", request_id_var.get())


def setup_logging(settings: Settings) -> None:
    """Configure sinks once per settings; safe to call from the app factory and gunicorn hooks."""
    global _configured_for, _relay, _access_direct
    key = (
        settings.log.level,
        settings.log.as_json,
        settings.log.to_file,
        str(settings.logs_dir),
        settings.log.rotation,
        settings.log.retention,
        settings.log.compression,
    )
    if _configured_for == key:
        return
    for sink_id in _sink_ids:
        try:
            logger.remove(sink_id)
        except ValueError:
            pass
    _sink_ids.clear()
    if _relay is not None:
        _relay.close()
        _relay = None
    logger.configure(patcher=_add_request_id)
    level = settings.log.level.upper()
    # Not a terminal (systemd, Docker, a file): the console shows exactly the file's lines, so the relay
    # writes them to both; a terminal gets its own colored sink.
    console_via_relay = settings.log.to_file and not os.isatty(2)
    if not console_via_relay:
        _sink_ids.append(
            logger.add(
                sys.stderr,
                level=level,
                format=CONSOLE_FORMAT,
                serialize=settings.log.as_json,
                filter=not_relayed,
                backtrace=False,
                diagnose=False,
                enqueue=False,
            )
        )
    if settings.log.to_file:
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        # One file for the gunicorn master and all its workers: see ai_service/server/log_relay.py.
        _relay = FileRelay(
            settings.logs_dir / "ai_service.log",
            level=level,
            serialize=settings.log.as_json,
            format=CONSOLE_FORMAT.replace("<green>", "").replace("</green>", ""),
            echo_fd=2 if console_via_relay else None,
            rotation=settings.log.rotation,
            retention=settings.log.retention,
            compression=settings.log.compression or None,
        )
    # The stdlib side filters at the same level: below it, libraries' records (Pillow logs 2 DEBUG lines
    # per PNG decoded) are not even created, instead of being built, routed here and dropped by loguru.
    _access_direct = console_via_relay and not settings.log.as_json
    logging.basicConfig(handlers=[InterceptHandler()], level=logger.level(level).no, force=True)
    for name in STDLIB_LOGGERS:
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
    logging.captureWarnings(True)
    _configured_for = key


def flush_logs() -> None:
    """Block until every line this process logged so far is in the log file (tests, shutdown)."""
    if _relay is not None:
        _relay.flush()
    else:
        logger.complete()


atexit.register(flush_logs)  # the master's last lines (workers exiting) reach the file before it exits

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def annotate_request(**fields: object) -> None:
    """Attach facts (model, item count, stage timings) to the current request's access line and metrics.

    Flask-free so that inference code can call it; outside a request it does nothing."""
    current = request_fields_var.get()
    if current is not None:
        current.update(fields)


def request_fields() -> dict:
    """What has been annotated on the current request so far (empty outside a request)."""
    return request_fields_var.get() or {}


def _access_text(fields: dict) -> str:
    """`key=value` pairs for the text access line; timings as stage:ms pairs."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, dict):
            value = ",".join(
                f"{stage}:{ms:g}" if isinstance(ms, (int, float)) else f"{stage}:{ms}" for stage, ms in value.items()
            )
        parts.append(f"{key}={value}")
    return " ".join(parts)


_id_source: list = [None, "", None]  # pid, random prefix, counter


def new_request_id() -> str:
    """32 hex digits, unique across processes and restarts: a random per-process prefix and a counter
    (uuid4 reads the OS random source on every call; this is a tenth of its cost)."""
    pid = os.getpid()
    if _id_source[0] != pid:  # first call, or first call after a fork
        _id_source[:] = [pid, os.urandom(8).hex(), itertools.count()]
    return f"{_id_source[1]}{next(_id_source[2]):016x}"


def _timestamp() -> str:
    """Now, as loguru's `{time:YYYY-MM-DD HH:mm:ss.SSS}` writes it (local time, milliseconds truncated)."""
    global _second
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)))
    return f"{_second[1]}.{nanos // 1_000_000:03d}"


def write_access_line(message: str, fields: dict, request_id: str | None = None) -> None:
    """One access line. When only our own relay would see it as text (file + non-terminal console, no other
    sink), the line is formatted here and written straight into the pipe: through loguru it cost ~35 µs of
    CPU alone and ~70 µs with eight threads queueing on the sink's lock, about a tenth of a small model's
    request. Otherwise (JSON, a terminal, a sink someone added) loguru gets it with the fields bound.
    `request_id`: the request's id when the line is written after its context ended (see when_sent)."""
    relay = _relay
    caller = sys._getframe(1)
    handlers = getattr(getattr(logger, "_core", None), "handlers", None)  # loguru's sinks (private: checked)
    if _access_direct and relay is not None and isinstance(handlers, dict) and len(handlers) == 2:
        if relay.level_no <= INFO_NO:
            relay.write_line(
                f"{_timestamp()} | INFO    | {os.getpid()} | {request_id or request_id_var.get()} | "
                f"{caller.f_globals['__name__']}:{caller.f_lineno} - {message}\n",
                INFO_NO,
            )
        return
    bound = logger.bind(**fields) if request_id is None else logger.bind(request_id=request_id, **fields)
    bound.opt(depth=1).info(message)


def when_sent(environ: dict, response: Any, callback: Callable[[], None]) -> None:
    """Run `callback` once the client has the whole response, when the server tells us that moment (gunicorn
    closes a response's body after sending its last byte, error or not); otherwise now. Bookkeeping that no byte
    of the answer depends on (the access line, request metrics) then costs the client nothing (with the worker's
    header coalescing, digits at concurrency 1 answered ~7% sooner). The callback runs after the request context
    ended. `environ`: the request's WSGI environ."""
    if "gunicorn.socket" in environ:
        response.call_on_close(callback)
    else:
        callback()


def _access_line(
    response: Any, request_id: str, method: str, path: str, bytes_in: int, elapsed: float, fields: dict
) -> None:
    """The access line of an answered request (bytes_out counted now: a streamed body, the history export, is not
    counted, since counting would read it all into memory first)."""
    bytes_out = 0 if response.is_streamed else response.calculate_content_length() or 0
    write_access_line(
        f"{method} {path} {response.status_code} in={bytes_in}B out={bytes_out}B {elapsed:.1f}ms "
        f"{_access_text(fields)}",
        {
            **fields,
            "access": True,
            "method": method,
            "path": path,
            "status": response.status_code,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "duration_ms": round(elapsed, 3),
        },
        request_id,
    )


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with control characters escaped: a path like `/x%0A2026-… | INFO | …` cannot forge a log line."""
    if text.isprintable():
        return text
    return CONTROL_CHARACTERS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def install_request_logging(app: Flask) -> None:
    """Give every request an id (X-Request-ID or new), echo it back, and log one access line."""
    from flask import g, request

    # Each hook looks `g` and `request` up once: every proxy access is a context-variable lookup of its own.
    @app.before_request
    def _start_request() -> None:
        state = g._get_current_object()
        incoming = request.headers.get("X-Request-ID", "")
        state.request_id = request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else new_request_id()
        state.request_started = time.perf_counter()
        state.request_token = request_id_var.set(request_id)
        state.request_fields_token = request_fields_var.set({})

    @app.after_request
    def _finish_request(response):
        state = g._get_current_object()
        request_id = state.get("request_id")
        if request_id:
            current = request._get_current_object()
            response.headers["X-Request-ID"] = request_id
            elapsed = (time.perf_counter() - state.request_started) * 1000.0
            fields = {"client": state.get("client") or "ip:" + (current.remote_addr or "unknown"), **request_fields()}
            facts = (current.method, printable(current.path), current.content_length or 0, elapsed, fields)
            when_sent(current.environ, response, partial(_access_line, response, request_id, *facts))
        return response

    @app.teardown_request
    def _end_request(_exc: BaseException | None) -> None:
        state = g._get_current_object()
        token = state.pop("request_token", None)
        if token is not None:
            request_id_var.reset(token)
        fields_token = state.pop("request_fields_token", None)
        if fields_token is not None:
            request_fields_var.reset(fields_token)
