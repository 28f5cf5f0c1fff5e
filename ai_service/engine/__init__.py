"""The inference engine: per-model adaptive batching, back-pressure, deadlines and a fast forward path.

May import models (the contract and pytree), settings, devices, observability and server.cores (the core budget);
never Flask/werkzeug, service, http, api or web.

Names are imported on first use (PEP 562): importing the package loads neither torch nor prometheus_client.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Batcher": "batcher",
    "BatchRecord": "batcher",
    "DeadlineExceeded": "batcher",
    "DeviceOutOfMemory": "batcher",
    "Overloaded": "batcher",
    "Ticket": "batcher",
    "Engine": "engine",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
