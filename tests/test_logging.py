import json
import logging

from ai_service import create_app
from ai_service.logging import flush_logs


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
