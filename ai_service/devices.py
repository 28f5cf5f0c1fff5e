"""Device choice from settings, done once at startup, plus memory reports and cleanup."""
from __future__ import annotations

import gc
import os
import re
from typing import Any

from loguru import logger

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class DeviceError(RuntimeError):
    """CUDA was required (AI_SERVICE_REQUIRE_CUDA=1) or asked for in a form we cannot honour."""


def apply_gpu_visibility(gpus: str, environ: dict[str, str] | None = None) -> None:
    """Set CUDA_VISIBLE_DEVICES from AI_SERVICE_GPUS; must run before CUDA initialises."""
    environ = os.environ if environ is None else environ
    if not gpus:
        return
    if not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", gpus):
        raise DeviceError(f"AI_SERVICE_GPUS must be a comma-separated list of GPU indices, got {gpus!r}")
    import torch

    if torch.cuda.is_initialized():
        logger.warning("AI_SERVICE_GPUS={} ignored: CUDA was already initialised in this process", gpus)
        return
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(part.strip() for part in gpus.split(","))


def select_device(requested: str = "auto", require_cuda: bool = False, *, cuda_available: bool | None = None,
                  cuda_count: int | None = None) -> "torch.device":
    """Resolve auto|cpu|cuda|cuda:N to a usable torch.device, falling back to CPU with a warning."""
    import torch

    requested = (requested or "auto").strip().lower()
    if not DEVICE_PATTERN.match(requested):
        raise DeviceError(f"AI_SERVICE_DEVICE must be auto, cpu, cuda or cuda:N, got {requested!r}")
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    count = (torch.cuda.device_count() if available else 0) if cuda_count is None else cuda_count
    if requested == "cpu":
        if require_cuda:
            raise DeviceError("AI_SERVICE_REQUIRE_CUDA=1 contradicts AI_SERVICE_DEVICE=cpu")
        return torch.device("cpu")
    if requested == "mps":
        return torch.device("mps")
    if not available or count == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        reason = f"no CUDA device is available (CUDA_VISIBLE_DEVICES={visible!r})"
        if require_cuda:
            raise DeviceError(f"AI_SERVICE_REQUIRE_CUDA=1 but {reason}")
        if requested != "auto":
            logger.warning("AI_SERVICE_DEVICE={} requested but {}; falling back to CPU", requested, reason)
        return torch.device("cpu")
    index = int(requested.split(":")[1]) if ":" in requested else 0
    if index >= count:
        message = f"AI_SERVICE_DEVICE={requested} but only {count} CUDA device(s) are visible"
        if require_cuda:
            raise DeviceError(message)
        logger.warning("{}; using cuda:0", message)
        index = 0
    return torch.device("cuda", index)


def configure_torch_threads(threads: int, workers: int = 1) -> int:
    """Give each worker an equal share of the cores so workers never oversubscribe the CPU."""
    import torch

    if threads <= 0:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    torch.set_num_threads(threads)
    return threads


def describe_device(device: "torch.device") -> dict[str, Any]:
    """What the health endpoint reports about the device: name, and memory on CUDA."""
    import torch

    info: dict[str, Any] = {"device": str(device), "type": device.type}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["memory_allocated"] = torch.cuda.memory_allocated(device)
        info["memory_reserved"] = torch.cuda.memory_reserved(device)
        info["memory_total"] = torch.cuda.get_device_properties(device).total_memory
    else:
        info["torch_threads"] = torch.get_num_threads()
    return info


def release_memory(device: "torch.device | None" = None) -> None:
    """Collect garbage and hand cached CUDA blocks back, after a model's references are dropped."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()
