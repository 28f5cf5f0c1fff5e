"""What a prediction needs, built once per process: the settings, the model registry and the engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from ai_service.service.cache import Cache, open_cache
from ai_service.service.history.recorder import History, open_history
from ai_service.settings import Settings

if TYPE_CHECKING:  # jobs import the predict path, which imports this module
    from ai_service.service.jobs import Jobs


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
    #: Bulk jobs (database, job store, executor); None when AI_SERVICE_JOBS=off.
    jobs: Jobs | None = None
    #: Answers to inputs seen before (service/cache.py); None when AI_SERVICE_RESULT_CACHE=off.
    cache: Cache | None = None

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
        """Stop the job threads, the engine's inference threads, and flush the history (tests and tools create many
        runtimes)."""
        if self.jobs is not None:
            self.jobs.close()  # first: a chunk in progress hands itself back while the engine still runs
        self.engine.close()
        if self.history is not None:
            self.history.close()


@contextmanager
def model_errors(registry: ModelRegistry, ref: str) -> Iterator[None]:
    """The one place registry exceptions become the ServiceErrors callers see (unknown_model, model_busy, ...)."""
    try:
        yield
    except UnknownModelError:
        available = registry.keys()  # name@version, the form every endpoint accepts and ModelStatus.key shows
        raise ServiceError(
            "unknown_model",
            f"No model named {ref!r}. Available: {', '.join(available)} (a name alone addresses its newest version).",
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


def build_runtime(settings: Settings, *, run_jobs: bool = True) -> Runtime:
    """Select the device, register the models, create the engine, open the history and the jobs; loads no model
    (see `registry.preload`). `run_jobs`: start the local executor's threads here, in the process that serves
    (False for CLI commands and tools, which must not take the service's chunks)."""
    from ai_service.devices import select_device
    from ai_service.models.catalog import build_registry
    from ai_service.service.jobs import open_jobs

    device = select_device(settings.compute.device, settings.compute.require_cuda)
    registry, engine = build_registry(settings, device), Engine(settings.engine)
    runtime = Runtime(settings, registry, engine, open_history(settings), open_jobs(settings), open_cache(settings))
    if runtime.jobs is not None and run_jobs:
        runtime.jobs.start(runtime)
    return runtime
