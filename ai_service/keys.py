"""API keys, Flask-free: which keys unlock the service, constant-time matching, and the fingerprint that names a key
in logs, rate-limit buckets and history rows. The HTTP layer (ai_service/http/security.py) and the Gradio app's
login check keys here, so a key means the same everywhere."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from ai_service.settings import SecuritySettings


def key_matches(presented: str, accepted: Iterable[str]) -> bool:
    """Constant-time membership: every accepted key is compared, so timing reveals nothing."""
    candidate = presented.encode("utf-8", "surrogateescape")
    matched = False
    for key in accepted:
        matched |= hmac.compare_digest(candidate, key.encode("utf-8", "surrogateescape"))
    return matched


def key_fingerprint(key: str) -> str:
    """A short, non-reversible name for a key, safe to put in logs and rate-limit buckets."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def accepted_keys(security: SecuritySettings) -> tuple[str, ...]:
    """Keys that unlock the API: the configured API keys plus the admin token, which may do anything."""
    return security.api_keys + ((security.admin_token,) if security.api_keys and security.admin_token else ())
