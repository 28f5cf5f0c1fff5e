"""Device choice from settings, done once at startup, plus memory reports and cleanup."""

from __future__ import annotations

import gc
import os
import re
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class DeviceError(RuntimeError):
    """CUDA was required (AI_SERVICE_REQUIRE_CUDA=1) or asked for in a form we cannot honor."""


def apply_gpu_visibility(gpus: str, environ: dict[str, str] | None = None) -> None:
    """Set CUDA_VISIBLE_DEVICES from AI_SERVICE_GPUS; must run before CUDA initializes."""
    environ = os.environ if environ is None else environ
    if not gpus:
        return
    if not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", gpus):
        raise DeviceError(f"AI_SERVICE_GPUS must be a comma-separated list of GPU indices, got {gpus!r}")
    import torch

    if torch.cuda.is_initialized():
        logger.warning("AI_SERVICE_GPUS={} ignored: CUDA was already initialized in this process", gpus)
        return
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(part.strip() for part in gpus.split(","))


def select_device(
    requested: str = "auto",
    require_cuda: bool = False,
    *,
    cuda_available: bool | None = None,
    cuda_count: int | None = None,
) -> torch.device:
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
        from ai_service.server.cores import available_cores  # affinity and cgroup quota, unlike os.cpu_count

        threads = max(1, available_cores() // max(1, workers))
    torch.set_num_threads(threads)
    return threads


def describe_device(device: torch.device) -> dict[str, Any]:
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


def release_memory(device: torch.device | None = None) -> None:
    """Collect garbage and hand cached CUDA blocks back, after a model's references are dropped."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()


MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def total_memory(device: torch.device) -> int:
    """Bytes of memory behind `device`: the GPU's total on CUDA, physical RAM otherwise."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parse_memory_budget(value: str, device: torch.device) -> int | None:
    """'8GiB', '2500000000', '75%' (of the device's memory) → bytes; empty → None (no budget)."""
    text = (value or "").strip().lower().replace(" ", "")
    if not text:
        return None
    if text.endswith("%"):
        percent = float(text[:-1])
        if not 0 < percent <= 100:
            raise DeviceError(f"a memory budget in percent must be in (0, 100], got {value!r}")
        return int(total_memory(device) * percent / 100)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]*)", text)
    if not match or match.group(2) not in MEMORY_UNITS:
        raise DeviceError(f"cannot read memory budget {value!r}: use e.g. 4GiB, 4000MB, 4000000000 (bytes) or 75%")
    budget = int(float(match.group(1)) * MEMORY_UNITS[match.group(2)])
    if budget <= 0:
        raise DeviceError(f"a memory budget must be positive, got {value!r}")
    return budget


def process_rss() -> int:
    """Resident set size of this process in bytes (current, from /proc; peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def describe_devices() -> list[dict[str, Any]]:
    """Every device this process can use: the CPU and each visible CUDA GPU with its memory counters."""
    import torch

    devices = [describe_device(torch.device("cpu"))]
    if torch.cuda.is_available():
        devices += [describe_device(torch.device("cuda", index)) for index in range(torch.cuda.device_count())]
    return devices


def memory_allocated(device: torch.device) -> int:
    """Bytes PyTorch's allocator currently holds for tensors on `device` (0 off CUDA)."""
    import torch

    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0
