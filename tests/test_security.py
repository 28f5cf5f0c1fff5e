"""API keys, rate limits (memory and Redis), security headers, CORS, and the CSP-compatibility of our pages."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import encode

from ai_service import create_app
from ai_service.http.security import key_fingerprint, key_matches
from ai_service.settings import PROJECT_ROOT, ConfigError

PREDICT = "/api/v1/predict"


def make_app(home: Path, **settings):
    return create_app({"TESTING": True, "home": str(home), "log_to_file": False, **settings})


@pytest.fixture
def png() -> bytes:
    from PIL import Image

    return encode(Image.new("L", (28, 28), 0))


def predict(client, png: bytes, **kwargs):
    return client.post(PREDICT, data={"file": (io.BytesIO(png), "x.png")}, content_type="multipart/form-data", **kwargs)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.data[:300]
    return response.get_json()["error"]


# ---------------------------------------------------------------- API keys


def test_without_keys_predict_is_open(home, png):
    assert predict(make_app(home).test_client(), png).status_code == 200


def test_keys_guard_predict_but_not_reads_and_probes(home, png):
    client = make_app(home, api_keys="alpha-key, beta-key").test_client()
    missing = predict(client, png)
    assert error_of(missing, 401)["code"] == "missing_api_key"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "X-API-Key" in missing.get_json()["error"]["message"]
    assert error_of(predict(client, png, headers={"X-API-Key": "alpha-key-nope"}), 401)["code"] == "invalid_api_key"
    assert (
        error_of(predict(client, png, headers={"Authorization": "Basic YWxwaGEta2V5"}), 401)["code"]
        == "missing_api_key"
    )
    assert predict(client, png, headers={"X-API-Key": "alpha-key"}).status_code == 200
    assert predict(client, png, headers={"Authorization": "Bearer beta-key"}).status_code == 200
    for path in ("/api/v1/models", "/api/v1/health", "/healthz", "/readyz", "/metrics", "/"):
        assert client.get(path).status_code == 200, path


def test_keys_also_guard_the_html_form(home, png):
    client = make_app(home, api_keys="alpha-key").test_client()
    response = client.post("/predict", data={"file": (io.BytesIO(png), "x.png")}, content_type="multipart/form-data")
    assert response.status_code == 401 and response.mimetype == "text/html"


def test_admin_token_works_as_an_api_key(home, png):
    client = make_app(home, api_keys="alpha-key", admin_token="root-token-123").test_client()
    assert predict(client, png, headers={"Authorization": "Bearer root-token-123"}).status_code == 200


def test_key_matching_is_exact_and_handles_any_text():
    assert key_matches("k1", ("k0", "k1"))
    assert not key_matches("k1 ", ("k1",)) and not key_matches("", ("k1",)) and not key_matches("k", ())
    assert key_matches("clé-ü", ("clé-ü",)) and not key_matches("clé-u", ("clé-ü",))
    assert key_fingerprint("k1") != key_fingerprint("k2") and "k1" not in key_fingerprint("k1")


# ---------------------------------------------------------------- management endpoints (admin token)


def test_management_refuses_missing_and_wrong_tokens(home):
    unload = "/api/v1/models/digits/unload"
    disabled = make_app(home / "off").test_client()
    assert (
        error_of(disabled.post(unload, headers={"Authorization": "Bearer anything"}), 403)["code"] == "admin_disabled"
    )
    client = make_app(home / "on", admin_token="s3cret-admin-token", preload="digits").test_client()
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic czNjcmV0"},
        {"Authorization": "Bearer s3cret-admin-token-and-more"},
        {"X-API-Key": "s3cret-admin-token"},
    ):
        response = client.post(unload, headers=headers)
        assert error_of(response, 401)["code"] == "unauthorized", headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/readyz").status_code == 200
    done = client.post(unload, headers={"Authorization": "Bearer s3cret-admin-token"})
    assert done.status_code == 200 and done.get_json()["model"]["state"] == "registered"
    assert client.get("/readyz").status_code == 503  # the preloaded model is gone: not ready


def test_management_with_api_keys_needs_the_admin_token_not_just_a_key(home):
    client = make_app(home, admin_token="s3cret-admin-token", api_keys="alpha-key").test_client()
    load = "/api/v1/models/digits/load"
    assert error_of(client.post(load), 401)["code"] == "missing_api_key"
    assert error_of(client.post(load, headers={"X-API-Key": "alpha-key"}), 401)["code"] == "unauthorized"
    assert client.post(load, headers={"Authorization": "Bearer s3cret-admin-token"}).status_code == 200


# ---------------------------------------------------------------- rate limits


def test_rate_limit_answers_429_with_retry_after(home):
    client = make_app(home, rate_limit="3/minute").test_client()
    for remaining in ("2", "1", "0"):
        response = client.get("/api/v1/models")
        assert response.status_code == 200 and response.headers["X-RateLimit-Remaining"] == remaining
    limited = client.get("/api/v1/models")
    error = error_of(limited, 429)
    assert error["code"] == "rate_limited" and "3 per 1 minute" in error["message"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/health", "/static/style.css"):
        assert client.get(path).status_code == 200, path  # probes and assets never count
    other = client.get("/api/v1/models", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200  # another address has its own budget


def test_rate_limit_budget_follows_the_api_key_not_the_address(home, png):
    client = make_app(home, rate_limit="2/minute", api_keys="alpha-key,beta-key").test_client()
    alpha, beta = {"X-API-Key": "alpha-key"}, {"X-API-Key": "beta-key"}
    assert predict(client, png, headers=alpha, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200
    assert predict(client, png, headers=alpha, environ_base={"REMOTE_ADDR": "192.0.2.2"}).status_code == 200
    assert error_of(predict(client, png, headers=alpha, environ_base={"REMOTE_ADDR": "192.0.2.3"}), 429)
    assert predict(client, png, headers=beta, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200


def test_wrong_keys_spend_the_address_budget(home, png):
    """Guessing keys does not get a fresh budget per guess."""
    client = make_app(home, rate_limit="2/minute", api_keys="alpha-key").test_client()
    for guess in ("g1", "g2"):
        assert predict(client, png, headers={"X-API-Key": guess}).status_code == 401
    assert predict(client, png, headers={"X-API-Key": "g3"}).status_code == 429


def test_forwarded_for_is_trusted_only_behind_a_configured_proxy(home):
    spoofed = make_app(home, rate_limit="1/minute").test_client()
    assert spoofed.get("/api/v1/models", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert spoofed.get("/api/v1/models", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 429
    proxied = make_app(home / "p", rate_limit="1/minute", trusted_proxies=1).test_client()
    assert proxied.get("/api/v1/models", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert proxied.get("/api/v1/models", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    assert proxied.get("/api/v1/models", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 429


def test_unparsable_rate_limit_stops_start_up(home):
    with pytest.raises(ConfigError, match="rate_limit"):
        make_app(home, rate_limit="lots per day")


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free loopback port; CI must have it (FAIL there, skip elsewhere)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI (Debian package redis-server, installed by .ci/run)")
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_storage_shares_one_budget_between_workers(home, redis_url):
    """Two app instances stand in for two gunicorn workers: with Redis they spend the same budget."""
    first = make_app(home / "a", rate_limit="3/minute", redis_url=redis_url).test_client()
    second = make_app(home / "b", rate_limit="3/minute", redis_url=redis_url).test_client()
    assert [first.get("/api/v1/models").status_code for _ in range(2)] == [200, 200]
    assert second.get("/api/v1/models").status_code == 200
    limited = second.get("/api/v1/models")
    assert error_of(limited, 429)["code"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    assert first.get("/api/v1/models").status_code == 429


def test_memory_storage_is_per_worker(home):
    first = make_app(home / "a", rate_limit="1/minute").test_client()
    second = make_app(home / "b", rate_limit="1/minute").test_client()
    assert first.get("/api/v1/models").status_code == 200 and second.get("/api/v1/models").status_code == 200


# ---------------------------------------------------------------- headers and CSP


def test_html_pages_get_a_strict_csp_and_hardening_headers(home):
    client = make_app(home).test_client()
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["X-Frame-Options"] == "DENY"
    api = client.get("/api/v1/models")
    assert api.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    error_page = client.get("/no-such-page")
    assert error_page.status_code == 404 and "unsafe-inline" not in error_page.headers["Content-Security-Policy"]


def test_csp_can_be_replaced(home):
    client = make_app(home, csp="default-src 'self'").test_client()
    assert client.get("/").headers["Content-Security-Policy"] == "default-src 'self'"


INLINE_PATTERNS = {
    "inline <script> without src": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "inline event handler": re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "style attribute": re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE),
    "<style> block": re.compile(r"<style[\s>]", re.IGNORECASE),
}
SCRIPT_PATTERNS = {
    "eval": re.compile(r"\beval\s*\(|new\s+Function\s*\("),
    "string timer": re.compile(r"set(?:Timeout|Interval)\s*\(\s*[\"'`]"),
    "style attribute set from script": re.compile(r"setAttribute\(\s*[\"']style[\"']|\.style\.cssText\s*="),
    "inline handler set from script": re.compile(r"setAttribute\(\s*[\"']on[a-z]+[\"']"),
}


def test_templates_and_scripts_need_nothing_the_csp_forbids():
    """The CSP has no 'unsafe-inline'/'unsafe-eval': pages must not rely on them, or the browser blocks them."""
    problems = []
    for template in sorted((PROJECT_ROOT / "templates").rglob("*.html")):
        text = template.read_text(encoding="utf-8")
        problems += [f"{template.name}: {what}" for what, pattern in INLINE_PATTERNS.items() if pattern.search(text)]
    for script in sorted((PROJECT_ROOT / "static").rglob("*.js")):
        text = script.read_text(encoding="utf-8")
        problems += [f"{script.name}: {what}" for what, pattern in SCRIPT_PATTERNS.items() if pattern.search(text)]
    assert not problems, problems


# ---------------------------------------------------------------- CORS


def test_cors_is_off_by_default(home):
    client = make_app(home).test_client()
    response = client.get("/api/v1/models", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_configured_origins_on_the_api(home, png):
    client = make_app(
        home, cors_origins="https://app.example, https://other.example", api_keys="alpha-key"
    ).test_client()
    allowed = client.get("/api/v1/models", headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in allowed.headers["Vary"] and "X-Request-ID" in allowed.headers["Access-Control-Expose-Headers"]
    denied = client.get("/api/v1/models", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    preflight = client.options(
        PREDICT,
        headers={
            "Origin": "https://other.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200  # preflights carry no credentials; the key check must let them through
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    page = client.get("/", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in page.headers
    rejected = predict(client, png, headers={"Origin": "https://app.example"})
    assert rejected.status_code == 401 and rejected.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_cors_wildcard(home):
    client = make_app(home, cors_origins="*").test_client()
    response = client.get("/api/v1/models", headers={"Origin": "https://anyone.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
