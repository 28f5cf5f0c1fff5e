"""The engine of one Runtime: a batcher per loaded model, created on first use, replaced on reload."""

from __future__ import annotations

import threading
from typing import Any

import torch
from loguru import logger

from ai_service.engine.batcher import Batcher
from ai_service.engine.runner import ForwardRunner
from ai_service.models.base import ImageModel, ModelOptions
from ai_service.settings import EngineSettings

#: Measured (bench/results/serving.md): on CPU resnet18 gains ~20% from batch 1 to 8 and loses past 16;
#: on a GPU batches of 32 are still far from saturating the device.
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32}
FALLBACK_BATCH_SIZE = 8


class Engine:
    """Holds one Batcher per model name; a model object replaced in the registry gets a fresh one."""

    def __init__(self, settings: EngineSettings | None = None) -> None:
        #: The engine section of the settings (defaults for an engine built by hand).
        self.settings = settings or EngineSettings()
        self._batchers: dict[str, tuple[ImageModel, Batcher, ForwardRunner]] = {}
        self._lock = threading.Lock()

    def batcher(self, model: ImageModel) -> Batcher:
        """The batcher serving `model` (must be loaded: its device decides the default batch size)."""
        name = getattr(model.info, "key", model.info.name)
        with self._lock:
            current = self._batchers.get(name)
            if current is not None and current[0] is model:
                return current[1]
            max_batch_size = self.batch_size_for(model, model.device)
            runner = ForwardRunner(model, self.settings, max_batch_size)
            batcher = Batcher(
                name,
                runner,
                max_batch_size=max_batch_size,
                max_delay_ms=self.batch_delay_for(model),
                max_queue=self.settings.max_queue,
                max_bulk_queue=self.settings.max_queue,  # a bound of its own: a job never fills the page's queue
                idle_exit_s=self.settings.idle_exit_s,
                label=model.info.name,
                inline=runner.runs_inline,
            )
            runner.under_load = lambda: batcher.pending > 0
            self._batchers[name] = (model, batcher, runner)
        if current is not None:
            current[1].close(timeout=0)
        return batcher

    def warm(self, model: ImageModel) -> None:
        """With AI_SERVICE_COMPILE, compile the loaded model's batch buckets now (preload), not in its first request."""
        if not self.settings.compile:
            return
        self.batcher(model)
        with self._lock:
            runner = self._batchers[getattr(model.info, "key", model.info.name)][2]
        try:
            runner.warm_up(model.preprocess([model.warmup_image()], ModelOptions(top_k=1)).tensor[0])
        except Exception as error:  # noqa: BLE001 - a model that cannot take a blank image still serves; its first batch warms it
            logger.warning("model {}: no warm-up at load ({}: {})", model.info.name, type(error).__name__, error)

    def batch_size_for(self, model: ImageModel | None, device: torch.device | None) -> int:
        """The model's own limit (None: not loaded yet), else the setting, else the measured default for the device."""
        own = getattr(model, "max_batch_size", None)
        if own:
            return int(own)
        if self.settings.max_batch_size:
            return self.settings.max_batch_size
        return DEFAULT_BATCH_SIZE.get(device.type if device is not None else "cpu", FALLBACK_BATCH_SIZE)

    def batch_delay_for(self, model: ImageModel) -> float:
        """The model's own delay (0 is a choice: never wait), else the setting."""
        own = getattr(model, "max_batch_delay_ms", None)
        return float(own) if own is not None else self.settings.max_batch_delay_ms

    def stats(self) -> dict[str, dict[str, Any]]:
        """Queue depth and batch sizes per model, for health pages and benchmarks."""
        with self._lock:
            return {name: batcher.stats() for name, (_, batcher, _) in sorted(self._batchers.items())}

    def close(self) -> None:
        with self._lock:
            batchers = [batcher for _, batcher, _ in self._batchers.values()]
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()
