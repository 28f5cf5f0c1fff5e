import json
import logging
import re

from loguru import logger

from ai_service import create_app
from ai_service.observability.logging import flush_logs


def read_log(home) -> str:
    flush_logs()
    return (home / "logs" / "ai_service.log").read_text()


def test_request_lines_carry_the_request_id_to_the_file(home):
    client = create_app({"home": str(home)}).test_client()
    client.get("/api/v1/health", headers={"X-Request-ID": "trace-42"})
    text = read_log(home)
    assert "trace-42" in text and "GET /api/v1/health 200" in text


def test_stdlib_logging_goes_through_loguru(home):
    create_app({"home": str(home)})
    logging.getLogger("werkzeug").warning("hello from werkzeug")
    logging.getLogger("some.library").error("hello from stdlib")
    text = read_log(home)
    assert "hello from werkzeug" in text and "hello from stdlib" in text


def test_unhandled_exceptions_are_logged_with_traceback(home):
    app = create_app({"home": str(home)})

    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("kaboom")

    assert app.test_client().get("/boom").status_code == 500
    text = read_log(home)
    assert "Traceback" in text and "ZeroDivisionError: kaboom" in text


def test_json_lines_option(home):
    client = create_app({"home": str(home), "log_json": True}).test_client()
    client.get("/api/v1/health", headers={"X-Request-ID": "json-1"})
    records = [json.loads(line) for line in read_log(home).splitlines() if line.strip()]
    access = [r for r in records if r["record"]["extra"].get("request_id") == "json-1"]
    assert access and "GET /api/v1/health" in access[-1]["record"]["message"]


LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| INFO    \| \d+ \| (?P<rid>\S+) \| "
    r"ai_service\.observability\.logging:\d+ - (?P<message>.*)$"
)


def access_line(text: str, request_id: str) -> str:
    (line,) = [line for line in text.splitlines() if f"| {request_id} |" in line]
    return line


def test_direct_access_lines_look_exactly_like_loguru_lines(home):
    """Text access lines skip loguru while only our relay sees them; a sink added by anyone brings loguru
    back, and both ways write the same line (bar the clock)."""
    client = create_app({"home": str(home)}).test_client()
    client.get("/api/v1/health", headers={"X-Request-ID": "direct-1"})
    seen: list[str] = []
    sink = logger.add(seen.append, level="INFO", filter=lambda record: record["extra"].get("access"))
    try:
        client.get("/api/v1/health", headers={"X-Request-ID": "loguru-1"})
    finally:
        logger.remove(sink)
    text = read_log(home)
    direct, via_loguru = LINE.match(access_line(text, "direct-1")), LINE.match(access_line(text, "loguru-1"))
    assert direct and via_loguru and len(seen) == 1
    assert direct["message"].split(" in=")[0] == via_loguru["message"].split(" in=")[0] == "GET /api/v1/health 200"
    strip = re.compile(r"^\S+ \S+|\| \S+-1 \||\d+\.\dms")  # clock, request id and duration differ
    assert strip.sub("", access_line(text, "direct-1")) == strip.sub("", access_line(text, "loguru-1"))


def test_access_lines_respect_the_level(home):
    client = create_app({"home": str(home), "log_level": "WARNING"}).test_client()
    client.get("/api/v1/health", headers={"X-Request-ID": "quiet-1"})
    assert "quiet-1" not in read_log(home)


def test_a_path_cannot_forge_log_lines(home):
    """Control characters in the path are escaped in the access line: no second line, no terminal codes."""
    client = create_app({"home": str(home)}).test_client()
    client.get(
        "/x%0A2026-01-01 00:00:00.000 | INFO    | 1 | forged | x:1 - GET /admin 200%1B[2J",
        headers={"X-Request-ID": "forge-1"},
    )
    text = read_log(home)
    assert not any("| forged |" in line and "forge-1" not in line for line in text.splitlines())
    line = access_line(text, "forge-1")
    assert "/x\\n2026-01-01" in line and "\\x1b[2J" in line and "\x1b" not in text


def test_under_gunicorn_the_access_line_is_written_once_the_response_is_sent(home):
    """gunicorn closes a response after its last byte: the access line (and the request's metrics) wait for that
    moment, so the client never waits for them, and still carry the request's id and status."""
    client = create_app({"home": str(home)}).test_client()
    seen: list = []
    sink = logger.add(
        lambda message: seen.append(message.record), level="INFO", filter=lambda r: r["extra"].get("access")
    )
    try:
        response = client.get(
            "/api/v1/health",
            headers={"X-Request-ID": "late-1"},
            environ_overrides={"gunicorn.socket": object()},
            buffered=False,
        )
        assert response.status_code == 200 and response.headers["X-Request-ID"] == "late-1"
        assert seen == []  # answered, not yet sent
        response.close()
        (record,) = seen
        assert record["extra"]["request_id"] == "late-1" and record["extra"]["status"] == 200
        assert record["message"].startswith("GET /api/v1/health 200")
    finally:
        logger.remove(sink)
    response = client.get(
        "/api/v1/health", headers={"X-Request-ID": "late-2"}, environ_overrides={"gunicorn.socket": object()}
    )
    response.close()
    assert access_line(read_log(home), "late-2")  # the direct path too, with the id the context no longer holds
