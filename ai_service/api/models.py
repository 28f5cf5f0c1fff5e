"""GET /api/v1/models, /models/<name>, /system and /health: what is served, where it lives, whether it is up."""
from __future__ import annotations

import os
import time

from flask import jsonify

from ai_service import __version__
from ai_service.api import bp
from ai_service.api.common import registry
from ai_service.schemas import SystemModel
from ai_service.devices import describe_device, describe_devices, process_rss
from ai_service.errors import ServiceError
from ai_service.models.registry import ModelLoadError, UnknownModelError

SYSTEM_FIELDS = tuple(SystemModel.model_fields)  # the registry status keys /api/v1/system reports


@bp.get("/models")
def list_models():
    return jsonify({"models": registry().statuses()})


@bp.get("/models/<ref>")
def model_detail(ref: str):
    """One model by name (newest version) or name@version, with the versions served under that name."""
    models = registry()
    statuses = models.statuses()
    try:
        key = models.resolve(ref).info.key
    except UnknownModelError as error:
        raise ServiceError("unknown_model", f"No model {ref!r}.", {"model": ref, "available": error.available}) from None
    except ModelLoadError:
        return jsonify(next(s for s in statuses if s["name"] == ref and s["state"] == "failed"))
    status = next(s for s in statuses if s["key"] == key)
    return jsonify({**status, "versions": models.versions(status["name"])})


@bp.get("/system")
def system():
    """Devices, memory counters, process RSS, the memory budget and every model's lifecycle state."""
    models = registry()
    device = describe_device(models.device)
    return jsonify({
        "version": __version__, "pid": os.getpid(), "time": time.time(), "device": device,
        "devices": describe_devices(), "memory_allocated": device.get("memory_allocated"),
        "memory_reserved": device.get("memory_reserved"), "process_rss": process_rss(),
        "memory": models.memory(),
        "models": [{field: status[field] for field in SYSTEM_FIELDS} for status in models.statuses()],
    })


@bp.get("/health")
def health():
    models = registry()
    return jsonify({"status": "ok", "version": __version__, "device": describe_device(models.device),
                    "loaded_models": models.loaded_names(), "models": models.names()})
