"""What is served and whether it is up: the model list, one model by ref, the system report, health, readiness."""

from __future__ import annotations

import os
import time
from typing import Any

from ai_service import __version__
from ai_service.devices import describe_device, describe_devices, process_rss
from ai_service.errors import ServiceError
from ai_service.schemas import SystemModel
from ai_service.server.cores import budget
from ai_service.service.runtime import Runtime
from ai_service.storage.database import backend, safe_url

#: The registry status keys the system report lists per model.
SYSTEM_FIELDS = tuple(SystemModel.model_fields)


def list_models(runtime: Runtime) -> list[dict[str, Any]]:
    """Every registered model's status (metadata, state, memory), then every failed registration."""
    return runtime.registry.statuses()


def model_detail(runtime: Runtime, ref: str) -> dict[str, Any]:
    """One model by name (newest version) or name@version, with the versions served under its name.

    A name whose registration failed (a plugin that does not import) answers its failed status, whatever
    version the ref asks for; a name the registry does not know is ServiceError unknown_model.
    """
    registry = runtime.registry
    try:
        entry = runtime.resolve(ref)
    except ServiceError as error:
        if error.code != "model_unavailable":
            raise
        name = ref.strip().partition("@")[0]
        failed = [s for s in registry.statuses() if s["name"] == name and s["state"] == "failed"]
        if not failed:
            raise
        return {**failed[0], "versions": []}
    return {**registry.status(entry), "versions": registry.versions(entry.info.name)}


def forward_threads(runtime: Runtime) -> dict[str, Any]:
    """The intra-op threads a CPU forward of this worker runs with, from the settings and the core budget.

    torch.get_num_threads() cannot say: it answers for the calling thread, and a request thread that has served
    a prediction is pinned to 1 (server/cores.py single_threaded; "1 torch threads" on a 2-core server) while
    the inference threads take their grant from the core budget: every idle core for a lone request, the
    worker's fair share under load, or AI_SERVICE_TORCH_THREADS when set.
    """
    fixed = runtime.settings.engine.torch_threads
    if fixed:
        return {"torch_threads": fixed, "torch_threads_busy": fixed, "torch_threads_adaptive": False}
    cores = budget()
    return {"torch_threads": cores.total, "torch_threads_busy": cores.fair_share, "torch_threads_adaptive": True}


def _with_threads(runtime: Runtime, device: dict[str, Any]) -> dict[str, Any]:
    """A CPU device's description with the threads its forwards really get (CUDA devices unchanged)."""
    return {**device, **forward_threads(runtime)} if device.get("type") == "cpu" else device


def system_report(runtime: Runtime) -> dict[str, Any]:
    """Devices, memory counters, process RSS, the memory budget and every model's lifecycle state."""
    registry = runtime.registry
    device = _with_threads(runtime, describe_device(registry.device))
    return {
        "version": __version__,
        "pid": os.getpid(),
        "time": time.time(),
        "device": device,
        "devices": [_with_threads(runtime, item) for item in describe_devices()],
        "memory_allocated": device.get("memory_allocated"),
        "memory_reserved": device.get("memory_reserved"),
        "process_rss": process_rss(),
        "memory": registry.memory(),
        "models": [{field: status[field] for field in SYSTEM_FIELDS} for status in registry.statuses()],
        "history": history_status(runtime),
        "jobs": runtime.jobs.describe() if runtime.jobs is not None else {"enabled": False},
    }


def history_status(runtime: Runtime) -> dict[str, Any]:
    """Where this worker's history goes and how its writer keeps up (no database round trip: cheap to poll)."""
    history = runtime.history
    if history is None:
        return {"enabled": False}
    writer = history.writer
    return {
        "enabled": True,
        "backend": backend(history.engine),
        "database": safe_url(history.engine),
        "images": history.settings.images,
        "written": writer.written,
        "waiting": writer.waiting,
        "dropped": writer.dropped,
    }


def health(runtime: Runtime) -> dict[str, Any]:
    """Liveness for people and scripts: version, device, which models are loaded and which exist."""
    registry = runtime.registry
    return {
        "status": "ok",
        "version": __version__,
        "device": _with_threads(runtime, describe_device(registry.device)),
        "loaded_models": registry.loaded_names(),
        "models": registry.names(),
    }


#: The state readiness reports for a required model whose ref fails to resolve, by the ServiceError's code.
UNRESOLVED_STATES = {"unknown_model": "unknown", "model_unavailable": "failed"}


def readiness(runtime: Runtime) -> dict[str, Any]:
    """Whether this process may take traffic: every preloaded model is loaded (`status` ready or not_ready).

    Each required model's state by name; one the registry does not know is 'unknown', one that failed to
    register is 'failed'.
    """
    states = {}
    for name in runtime.settings.models.preload:
        try:
            states[name] = runtime.resolve(name).state
        except ServiceError as error:
            if error.code not in UNRESOLVED_STATES:
                raise
            states[name] = UNRESOLVED_STATES[error.code]
    waiting = sorted(name for name, state in states.items() if state != "loaded")
    body: dict[str, Any] = {"status": "not_ready" if waiting else "ready", "pid": os.getpid(), "models": states}
    if waiting:
        body["message"] = f"Waiting for model(s) {', '.join(waiting)} to load."
    return body
