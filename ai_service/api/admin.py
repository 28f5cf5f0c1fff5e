"""POST /api/v1/models/<name>/load|unload|offload: lifecycle control, only with AI_SERVICE_ADMIN_TOKEN.

Without a configured token these endpoints answer 403: management is disabled, never open.
"""

from __future__ import annotations

import hmac

from flask import jsonify, request

from ai_service.api import bp
from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.service.lifecycle import manage

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ai_service admin"'}


def require_admin() -> None:
    """Accept only `Authorization: Bearer <AI_SERVICE_ADMIN_TOKEN>`, compared in constant time."""
    token = runtime().settings.security.admin_token
    if not token:
        raise ServiceError("admin_disabled", "Model management is disabled: set AI_SERVICE_ADMIN_TOKEN to enable it.")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ServiceError(
            "unauthorized", "Send the admin token as 'Authorization: Bearer <token>'.", headers=CHALLENGE
        )
    if not hmac.compare_digest(
        presented.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    ):
        raise ServiceError("unauthorized", "The admin token is not valid.", headers=CHALLENGE)


@bp.post("/models/<ref>/<action>")
def manage_model(ref: str, action: str):
    """Load (or bring back), unload (free the memory) or offload (weights to CPU RAM) one model."""
    from ai_service.api.models import with_example_urls  # here: api.models imports this module (via api.history)

    require_admin()
    done = manage(runtime(), ref, action)
    return jsonify({**done, "model": with_example_urls(done["model"])})
