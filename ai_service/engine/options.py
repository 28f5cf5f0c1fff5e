"""The engine's knobs, read from Settings once; per-model batch settings override the defaults."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from ai_service.settings import Settings

if TYPE_CHECKING:
    import torch

    from ai_service.models.base import ImageModel

AMP_CHOICES = ("", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Measured (bench/results/serving.md): on CPU resnet18 gains ~20% from batch 1 to 8 and loses past 16;
#: on a GPU batches of 32 are still far from saturating the device.
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32}
FALLBACK_BATCH_SIZE = 8


class EngineConfigError(ValueError):
    """An engine setting that cannot work (unknown AMP type, non-positive queue)."""


@dataclass(frozen=True)
class EngineOptions:
    """Batching, back-pressure and hot-path switches shared by every model of one process.

    Defaults are the settings' own (one source of truth); the last two exist only here."""

    max_batch_size: int = Settings.max_batch_size
    max_batch_delay_ms: float = Settings.max_batch_delay_ms
    max_queue: int = Settings.max_queue
    request_timeout_s: float = Settings.request_timeout_s
    amp: str = Settings.amp
    compile: bool = Settings.compile
    compile_mode: str = Settings.compile_mode
    channels_last: bool = Settings.channels_last
    fuse_batchnorm: bool = Settings.fuse_batchnorm
    torch_threads: int = Settings.torch_threads
    compile_backend: str = "inductor"
    idle_exit_s: float = 10.0

    def __post_init__(self) -> None:
        if self.amp not in AMP_CHOICES:
            raise EngineConfigError(f"AI_SERVICE_AMP must be empty, bf16 or fp16, got {self.amp!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise EngineConfigError(f"AI_SERVICE_COMPILE_MODE must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.max_batch_size < 0 or self.max_batch_delay_ms < 0 or self.max_queue < 1 or self.request_timeout_s <= 0:
            raise EngineConfigError("max_batch_size and max_batch_delay_ms must be >= 0, max_queue >= 1 and "
                                    "request_timeout_s > 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> "EngineOptions":
        """Every field the settings also have, with the free-text ones normalised."""
        shared = {field.name: getattr(settings, field.name) for field in fields(cls) if hasattr(settings, field.name)}
        shared.update(amp=settings.amp.strip().lower(), compile_mode=settings.compile_mode.strip().lower(),
                      torch_threads=max(0, settings.torch_threads))
        return cls(**shared)

    def batch_size_for(self, model: "ImageModel", device: "torch.device | None") -> int:
        """The model's own limit, else the setting, else the measured default for the device type."""
        own = getattr(model, "max_batch_size", None)
        if own:
            return int(own)
        if self.max_batch_size:
            return self.max_batch_size
        return DEFAULT_BATCH_SIZE.get(device.type if device is not None else "cpu", FALLBACK_BATCH_SIZE)

    def batch_delay_for(self, model: "ImageModel") -> float:
        own = getattr(model, "max_batch_delay_ms", None)
        return float(own) if own is not None else self.max_batch_delay_ms
