"""Who may call what and how often, what browsers may do with our responses, and how long a body may take.

- API keys (`AI_SERVICE_API_KEYS`): when set, every state-changing request (POST/PUT/PATCH/DELETE) needs
  `Authorization: Bearer <key>` or `X-API-Key: <key>`; the admin token counts as a key, so management
  calls (which also check the admin token themselves, in api/admin.py) need nothing extra.
- Rate limits (`AI_SERVICE_RATE_LIMIT`, flask-limiter): one budget per API key, or per client address
  without a key; memory storage per worker, Redis (`AI_SERVICE_REDIS_URL`) shared by all workers.
- Security headers on every response; a strict CSP (no inline scripts) on HTML, a locked-down one elsewhere.
- CORS for `/api/` only, and only for the origins listed in `AI_SERVICE_CORS_ORIGINS`.
- A deadline for receiving the request body (ai_service/http/deadline.py); bulk job uploads get more time for
  their size.
"""

from __future__ import annotations

import math
import time
from functools import partial

from flask import Flask, current_app, g, request
from loguru import logger
from werkzeug.middleware.proxy_fix import ProxyFix

from ai_service.errors import ServiceError
from ai_service.extras import require
from ai_service.http.deadline import BodyDeadlineMiddleware
from ai_service.keys import accepted_keys, key_fingerprint, key_matches
from ai_service.settings import ConfigError, SecuritySettings, Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/health"})
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
NON_HTML_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CORS_ALLOW_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-ID"
CORS_EXPOSE_HEADERS = "X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
KEY_HELP = "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
#: Bulk job uploads (up to AI_SERVICE_JOBS_MAX_UPLOAD_MB) get body_timeout plus their size at this rate, bytes/s.
JOBS_PATH = "/api/v1/jobs"
JOBS_JSON_PATH = "/api/v1/jobs/json"  # the JSON twin of JOBS_PATH (base64 images: larger still)
MIN_UPLOAD_RATE = 1024 * 1024


# --- API keys --------------------------------------------------------------------------------------


def presented_key() -> str | None:
    """The credential the client sent, from `X-API-Key` or an `Authorization: Bearer` header."""
    key = request.headers.get("X-API-Key", "").strip()
    if key:
        return key
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def client_identity(security: SecuritySettings) -> str:
    """`key:<fingerprint>` for a request with a valid key, otherwise `ip:<address>`; cached per request."""
    if "client" not in g:
        key = presented_key()
        if key and security.api_keys and key_matches(key, accepted_keys(security)):
            g.client = "key:" + key_fingerprint(key)
        else:
            g.client = "ip:" + (request.remote_addr or "unknown")
    return g.client


def require_api_key(security: SecuritySettings, needed_for: str = "This server requires an API key") -> None:
    """With keys configured, a valid one or the errors that say what to send (missing_api_key, invalid_api_key)."""
    if not security.api_keys:
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="ai_service"'}
    key = presented_key()
    if key is None:
        raise ServiceError("missing_api_key", f"{needed_for}: {KEY_HELP}.", headers=challenge)
    if not key_matches(key, accepted_keys(security)):
        raise ServiceError("invalid_api_key", "The API key is not valid.", headers=challenge)


def _require_api_key(security: SecuritySettings) -> None:
    """Refuse state-changing requests without a valid key when keys are configured."""
    if request.method not in SAFE_METHODS:
        require_api_key(security)


# --- rate limits -----------------------------------------------------------------------------------


def _exempt_from_limits() -> bool:
    """Probes, metrics, static files and CORS preflights never count against a budget."""
    return request.method == "OPTIONS" or request.path in UNLIMITED_PATHS or request.path.startswith("/static/")


def install_rate_limits(app: Flask, security: SecuritySettings) -> None:
    """Attach flask-limiter with one shared budget per client (nothing when limits are off)."""
    if not security.rate_limit.strip():
        return
    from flask_limiter import Limiter
    from limits import parse_many

    try:
        parse_many(security.rate_limit)
    except ValueError as exc:
        raise ConfigError(f"setting rate_limit: {exc} (use e.g. '120/minute;2000/hour')") from None
    redis = bool(security.redis_url)
    if redis:
        require("redis", "AI_SERVICE_REDIS_URL")
    limiter = Limiter(
        partial(client_identity, security),
        app=app,
        application_limits=[security.rate_limit],
        application_limits_exempt_when=_exempt_from_limits,
        storage_uri=security.redis_url or "memory://",
        strategy="sliding-window-counter",
        headers_enabled=False,
        key_prefix="ai_service",
        swallow_errors=redis,
        in_memory_fallback_enabled=redis,
    )
    app.extensions["ai_service_limiter"] = limiter
    logger.info(
        "rate limit {} per client, storage {}", security.rate_limit, "redis" if redis else "memory (per worker)"
    )


def _rate_limit_headers(response):
    """X-RateLimit-* on limited responses and a Retry-After of at least one second on a 429."""
    limiter = current_app.extensions.get("ai_service_limiter")
    current = limiter.current_limit if limiter is not None else None
    if current is None:
        return response
    seconds = max(1, math.ceil(current.reset_at - time.time()))
    response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
    response.headers["X-RateLimit-Remaining"] = str(max(0, current.remaining))
    response.headers["X-RateLimit-Reset"] = str(int(current.reset_at))
    if response.status_code == 429:
        response.headers["Retry-After"] = str(seconds)
    return response


# --- headers and CORS ------------------------------------------------------------------------------


def _origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    return "*" in allowed or origin.rstrip("/") in {item.rstrip("/") for item in allowed}


def _security_headers(security: SecuritySettings, response):
    """Hardening headers on everything; CORS headers for allowed origins on /api/."""
    # One pass over the headers set so far instead of a scan per name (Headers.setdefault): this runs on every response.
    present = {name.lower() for name in response.headers.keys()}
    html = (response.content_type or "").split(";", 1)[0].strip().lower() == "text/html"
    csp = (security.csp or HTML_CSP) if html else NON_HTML_CSP
    response.headers.extend(
        (name, value)
        for name, value in (*COMMON_HEADERS.items(), ("Content-Security-Policy", csp))
        if name.lower() not in present
    )
    origin = request.headers.get("Origin")
    if origin and security.cors_origins and request.path.startswith("/api/"):
        response.vary.add("Origin")
        if _origin_allowed(origin, security.cors_origins):
            response.headers["Access-Control-Allow-Origin"] = "*" if security.cors_origins == ("*",) else origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
            if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
                response.headers["Access-Control-Allow-Methods"] = response.headers.get("Allow", "GET, POST, OPTIONS")
                response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
    return response


# --- wiring ----------------------------------------------------------------------------------------


def install_security(app: Flask, settings: Settings) -> None:
    """Proxy trust, body deadline, rate limits, API keys, then headers on the way out (hooks keep `settings`)."""
    if settings.security.trusted_proxies > 0:
        hops = settings.security.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    slow_paths = {JOBS_PATH: MIN_UPLOAD_RATE, JOBS_JSON_PATH: MIN_UPLOAD_RATE} if settings.jobs.enabled else {}
    app.wsgi_app = BodyDeadlineMiddleware(app.wsgi_app, settings.limits.body_timeout, slow_paths)
    install_rate_limits(app, settings.security)
    app.before_request(partial(_require_api_key, settings.security))
    app.after_request(_rate_limit_headers)
    app.after_request(partial(_security_headers, settings.security))
