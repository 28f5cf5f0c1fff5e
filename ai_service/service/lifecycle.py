"""Model lifecycle on request: load (or bring back), unload (free the memory), offload (weights to CPU RAM)."""

from __future__ import annotations

import time
from typing import Any

from ai_service.errors import ServiceError
from ai_service.service.runtime import Runtime, model_errors

ACTIONS = ("load", "unload", "offload")


def manage(runtime: Runtime, ref: str, action: str) -> dict[str, Any]:
    """Do `action` to the model `ref` names; returns what was done, how long it took and the model's status after."""
    if action not in ACTIONS:
        raise ServiceError("not_found", f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    registry = runtime.registry
    started = time.perf_counter()
    with model_errors(registry, ref):
        entry = getattr(registry, action)(ref)
    seconds = round(time.perf_counter() - started, 4)
    return {"action": action, "seconds": seconds, "model": registry.status(entry)}
