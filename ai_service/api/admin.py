"""POST /api/v1/models/<name>/load|unload|offload: lifecycle control, only with AI_SERVICE_ADMIN_TOKEN.

Without a configured token these endpoints answer 403: management is disabled, never open.
"""
from __future__ import annotations

import hmac
import time

from flask import jsonify, request

from ai_service.api import bp
from ai_service.api.common import registry, settings
from ai_service.errors import ServiceError
from ai_service.models.registry import ModelBusyError, ModelLoadError, ModelStateError, UnknownModelError

ACTIONS = ("load", "unload", "offload")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ai_service admin"'}


def require_admin() -> None:
    """Accept only `Authorization: Bearer <AI_SERVICE_ADMIN_TOKEN>`, compared in constant time."""
    token = settings().admin_token
    if not token:
        raise ServiceError("admin_disabled", "Model management is disabled: set AI_SERVICE_ADMIN_TOKEN to enable it.")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ServiceError("unauthorized", "Send the admin token as 'Authorization: Bearer <token>'.",
                       headers=CHALLENGE)
    if not hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"),
                               token.encode("utf-8", "surrogateescape")):
        raise ServiceError("unauthorized", "The admin token is not valid.", headers=CHALLENGE)


@bp.post("/models/<ref>/<action>")
def manage_model(ref: str, action: str):
    """Load (or bring back), unload (free the memory) or offload (weights to CPU RAM) one model."""
    require_admin()
    if action not in ACTIONS:
        raise ServiceError("not_found", f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    models = registry()
    started = time.perf_counter()
    try:
        entry = getattr(models, action)(ref)
    except UnknownModelError as error:
        raise ServiceError("unknown_model", f"No model {ref!r}.", {"model": ref, "available": error.available}) \
            from None
    except ModelLoadError as error:
        raise ServiceError("model_unavailable", str(error), {"model": ref}) from None
    except ModelStateError as error:
        raise ServiceError("invalid_state", str(error), {"model": ref}) from None
    except ModelBusyError as error:
        raise ServiceError("model_busy", f"{error}; try again when its requests have finished.",
                       {"model": ref}) from None
    status = next(s for s in models.statuses() if s["key"] == entry.info.key)
    return jsonify({"action": action, "seconds": round(time.perf_counter() - started, 4), "model": status})
