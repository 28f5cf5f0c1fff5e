"""Where a gunicorn worker runs: its slot in the shared core budget and, with several GPUs, its own GPU.

The master assigns each new worker the lowest free slot (pre_fork), so a worker that replaces a dead
one takes over its slot, its share of the cores and its GPU: with AI_SERVICE_GPUS=0,1,2,3 and four
workers every GPU has exactly one worker, whatever crashed and restarted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableSequence
from typing import TYPE_CHECKING

from ai_service.server import cores

if TYPE_CHECKING:
    from ai_service.settings import Settings


def free_slot(taken: Iterable[int | None], count: int) -> int | None:
    """The lowest slot no live worker holds (None when more workers run than slots exist)."""
    used = set(taken)
    return next((slot for slot in range(count) if slot not in used), None)


def gpu_for_slot(gpus: str, slot: int | None) -> str | None:
    """With several GPUs listed, the one GPU this worker's slot maps to (round robin); else None."""
    listed = [part.strip() for part in gpus.split(",") if part.strip()]
    if len(listed) < 2 or slot is None:
        return None
    return listed[slot % len(listed)]


def enter_worker(
    slots: MutableSequence[int], slot: int | None, gpus: str, device: str = "auto", gpu_count: int = 0
) -> str | None:
    """In the freshly forked worker, before the app exists: join the core budget, pin the GPU."""
    if slot is not None:
        slots[slot] = 0
        cores.install(slots, slot)
    gpu = gpu_for_slot(gpus, slot)
    if gpu is not None:
        os.environ["AI_SERVICE_GPUS"] = gpu
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    elif (pinned := device_for_slot(gpus, device, slot, gpu_count)) is not None:
        os.environ["AI_SERVICE_DEVICE"] = pinned  # visible GPUs not listed: pick one by index, visibility unchanged
        return pinned
    return gpu


def visible_gpus(device: str) -> int:
    """CUDA GPUs this process could use (0 on a CPU box or with AI_SERVICE_DEVICE=cpu), counted through NVML
    (torch.cuda.device_count asks NVML first; is_available would initialize the CUDA driver), so the gunicorn
    master stays fork-safe for its workers."""
    if device.strip().lower() == "cpu":
        return 0
    import torch

    try:
        return max(0, torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken driver means no GPU to place workers on
        return 0


def default_workers(gpus: str, device: str, gpu_count: int | None = None) -> int:
    """AI_SERVICE_WORKERS=0 (the default): one worker per core (affinity and cgroup quota, see
    cores.available_cores), on a GPU box too, and never fewer than the GPUs in use.

    A worker's Python (HTTP, decoding, pre- and post-processing) runs on about one core whatever the device: on an
    H200 with 16 cores one worker served resnet18 at 72 requests/s and digits at 292, where the GPU alone does
    24,000 images/s (bench/results/serving-gpu.md). Workers take GPUs round robin (placement.enter_worker).
    """
    listed = [part for part in gpus.split(",") if part.strip()]
    device = device.strip().lower()
    if device == "cpu":
        return cores.available_cores()
    if listed:
        in_use = len(listed)
    elif device.startswith("cuda:"):
        in_use = 1
    else:
        in_use = visible_gpus(device) if gpu_count is None else gpu_count
    return max(cores.available_cores(), in_use)


def worker_count(settings: Settings, gpu_count: int | None = None) -> int:
    """The processes AI_SERVICE_WORKERS asks for: its number, or for 0 the best count for this machine. Web workers
    and Celery's prefork pool are sized alike (a request's and a chunk's Python both run on one core)."""
    return settings.server.workers or default_workers(settings.compute.gpus, settings.compute.device, gpu_count)


def device_for_slot(gpus: str, device: str, slot: int | None, gpu_count: int) -> str | None:
    """With several visible GPUs and none listed, the `cuda:N` this worker's slot maps to (AI_SERVICE_DEVICE);
    None when placement is by AI_SERVICE_GPUS, on one GPU, on the CPU or for an explicit device."""
    if gpus.strip() or slot is None or gpu_count < 2 or device.strip().lower() not in ("auto", "cuda"):
        return None
    return f"cuda:{slot % gpu_count}"
