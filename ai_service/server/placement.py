"""Where a gunicorn worker runs: its slot in the shared core budget and, with several GPUs, its own GPU.

The master assigns each new worker the lowest free slot (pre_fork), so a worker that replaces a dead
one takes over its slot, its share of the cores and its GPU: with AI_SERVICE_GPUS=0,1,2,3 and four
workers every GPU has exactly one worker, whatever crashed and restarted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableSequence

from ai_service.server import cores


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


def enter_worker(slots: MutableSequence[int], slot: int | None, gpus: str) -> str | None:
    """In the freshly forked worker, before the app exists: join the core budget, pin the GPU."""
    if slot is not None:
        slots[slot] = 0
        cores.install(slots, slot)
    gpu = gpu_for_slot(gpus, slot)
    if gpu is not None:
        os.environ["AI_SERVICE_GPUS"] = gpu
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def default_workers(gpus: str, device: str) -> int:
    """AI_SERVICE_WORKERS=0: one worker per listed GPU on a GPU box, one per core otherwise."""
    listed = [part for part in gpus.split(",") if part.strip()]
    if listed and device != "cpu":
        return len(listed)
    return cores.available_cores()
