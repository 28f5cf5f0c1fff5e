"""What a prediction needs, built once per process: the settings, the model registry and the engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ai_service.engine import Engine
from ai_service.errors import ServiceError
from ai_service.models.registry import (
    ModelBusyError,
    ModelEntry,
    ModelLoadError,
    ModelRegistry,
    ModelStateError,
    UnknownModelError,
)
from ai_service.service.history.recorder import History, open_history
from ai_service.settings import Settings


@dataclass(frozen=True)
class Runtime:
    """The state every service call reads; the app, the CLI and jobs each hold one, never a global."""

    #: The validated settings this runtime was built from.
    settings: Settings
    #: Every model the settings make available, registered on `device` (loaded on first use).
    registry: ModelRegistry
    #: One batcher per loaded model: batching, back-pressure and deadlines.
    engine: Engine
    #: The prediction history (database, background writer, image store); None when AI_SERVICE_HISTORY=off.
    history: History | None = None

    @property
    def device(self) -> torch.device:
        """The device the models run on."""
        return self.registry.device

    def resolve(self, ref: str | None) -> ModelEntry:
        """The model a ref names ('name' = newest version, 'name@version', empty = the default model)."""
        ref = (ref or self.settings.models.default_model).strip()
        with model_errors(self.registry, ref):
            return self.registry.resolve(ref)

    def close(self) -> None:
        """Stop the engine's inference threads and flush the history (tests and tools create many runtimes)."""
        self.engine.close()
        if self.history is not None:
            self.history.close()


@contextmanager
def model_errors(registry: ModelRegistry, ref: str) -> Iterator[None]:
    """The one place registry exceptions become the ServiceErrors callers see (unknown_model, model_busy, ...)."""
    try:
        yield
    except UnknownModelError:
        available = registry.names()
        raise ServiceError(
            "unknown_model",
            f"No model named {ref!r}. Available: {', '.join(available)} (address a version as name@version).",
            {"model": ref, "available": available},
        ) from None
    except ModelLoadError as error:
        raise ServiceError("model_unavailable", str(error), {"model": ref}) from None
    except ModelStateError as error:
        raise ServiceError("invalid_state", str(error), {"model": ref}) from None
    except ModelBusyError as error:
        raise ServiceError(
            "model_busy", f"{error}; try again when its requests have finished.", {"model": ref}
        ) from None


def build_runtime(settings: Settings) -> Runtime:
    """Select the device, register the models, create the engine, open the history; loads no model (see
    `registry.preload`)."""
    from ai_service.devices import select_device
    from ai_service.models.catalog import build_registry

    device = select_device(settings.compute.device, settings.compute.require_cuda)
    return Runtime(settings, build_registry(settings, device), Engine(settings.engine), open_history(settings))
