"""The engine's knobs, read from Settings once; per-model batch settings override the defaults."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ai_service.config import Settings
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
    """Batching, back-pressure and hot-path switches shared by every model of one process."""

    max_batch_size: int = 0
    max_batch_delay_ms: float = 5.0
    max_queue: int = 64
    request_timeout_s: float = 30.0
    amp: str = ""
    compile: bool = False
    compile_mode: str = "default"
    compile_backend: str = "inductor"
    channels_last: bool = True
    fuse_batchnorm: bool = True
    torch_threads: int = 0
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
    def from_settings(cls, settings: "Settings") -> "EngineOptions":
        return cls(max_batch_size=settings.max_batch_size, max_batch_delay_ms=settings.max_batch_delay_ms,
                   max_queue=settings.max_queue, request_timeout_s=settings.request_timeout_s,
                   amp=settings.amp.strip().lower(), compile=settings.compile,
                   compile_mode=settings.compile_mode.strip().lower(), channels_last=settings.channels_last,
                   fuse_batchnorm=settings.fuse_batchnorm,
                   torch_threads=max(0, settings.torch_threads))

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
