"""The registry: which models exist, which are loaded, and loading each exactly once on first use."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from loguru import logger

from ai_service.devices import release_memory
from ai_service.models.base import ImageModel


class UnknownModelError(KeyError):
    """No model of that name is registered."""


class ModelLoadError(RuntimeError):
    """The model is registered but could not be loaded (bad weights, broken plugin)."""


@dataclass
class ModelEntry:
    """A registered model and its lifecycle state."""

    model: ImageModel
    state: str = "registered"
    error: str | None = None
    last_used: float | None = None
    load_seconds: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> dict[str, Any]:
        return {**self.model.info.as_dict(), "state": self.state, "error": self.error,
                "last_used": self.last_used, "load_seconds": self.load_seconds}


class ModelRegistry:
    """Holds models by name for one device; loads lazily and thread-safely."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._entries: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()

    def register(self, model: ImageModel, *, replace: bool = False) -> None:
        """Add a model (not loaded yet); a duplicate name is an error unless `replace`."""
        name = model.info.name
        with self._lock:
            if name in self._entries and not replace:
                raise ValueError(f"a model named {name!r} is already registered")
            self._entries[name] = ModelEntry(model)
        logger.debug("registered model {} v{}", name, model.info.version)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> ModelEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModelError(name) from None

    def get(self, name: str) -> ImageModel:
        """Return the loaded model, loading it now if this is its first use."""
        entry = self.entry(name)
        if entry.state != "loaded":
            with entry.lock:
                if entry.state != "loaded":
                    self._load(entry)
        entry.last_used = time.time()
        return entry.model

    def _load(self, entry: ModelEntry) -> None:
        """Load under the entry's lock; failures are recorded and re-raised."""
        name = entry.model.info.name
        started = time.perf_counter()
        try:
            entry.model.load(self.device)
        except Exception as exc:
            entry.state, entry.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.opt(exception=exc).error("loading model {} failed", name)
            raise ModelLoadError(f"model {name!r} could not be loaded: {exc}") from exc
        entry.load_seconds = round(time.perf_counter() - started, 4)
        entry.state, entry.error = "loaded", None
        logger.info("loaded model {} v{} on {} in {:.3f}s", name, entry.model.info.version, self.device,
                    entry.load_seconds)

    def unload(self, name: str) -> None:
        """Drop the network and return its memory; the next request loads it again."""
        entry = self.entry(name)
        with entry.lock:
            entry.model.unload()
            entry.state = "registered"
        release_memory(self.device)
        logger.info("unloaded model {}", name)

    def preload(self, names: Iterable[str]) -> None:
        """Load models at startup so the first request does not pay for it."""
        for name in names:
            self.get(name)

    def loaded_names(self) -> list[str]:
        return [name for name, entry in sorted(self._entries.items()) if entry.state == "loaded"]

    def statuses(self) -> list[dict[str, Any]]:
        return [entry.status() for _, entry in sorted(self._entries.items())]
