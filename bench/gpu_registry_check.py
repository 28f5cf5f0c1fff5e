"""Does the registry really give GPU memory back? Load / forward / offload / reload / unload / LRU-evict on CUDA.

Usage: python bench/gpu_registry_check.py [--device cuda:0|cpu] [--architecture resnet50]

On CUDA it prints, and writes to bench/results/gpu_registry_check.md, for a torchvision model served
through a models file exactly as users do: load time and bytes, torch.cuda.memory_allocated() after each
step against the baseline before the first load (unload must return it exactly), offload (weights in CPU
RAM) and the reload time from there versus a cold load, and LRU eviction under a memory budget.
Without CUDA it says so and exits 0; `--device cpu` runs the same sequence on the CPU (weights are
then checked with weak references, as memory_allocated is a CUDA counter).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import weakref
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ai_service.devices import memory_allocated  # noqa: E402
from ai_service.models.base import ModelOptions  # noqa: E402
from ai_service.models.declarative import register_declarative  # noqa: E402
from ai_service.models.registry import ModelRegistry  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gpu_registry_check.md"
MiB = 2**20


def write_models(home: Path, architecture: str) -> None:
    """Two copies of a torchvision classifier (random weights) as state_dict models in a models file."""
    import torchvision

    (home / "models").mkdir(parents=True)
    network = torchvision.models.get_model(architecture, weights=None, num_classes=1000)
    torch.save(network.state_dict(), home / "models" / f"{architecture}.pt")
    entries = [
        {
            "name": name,
            "kind": "state_dict",
            "architecture": architecture,
            "num_classes": 1000,
            "weights": f"{architecture}.pt",
        }
        for name in ("first", "second")
    ]
    (home / "models.yaml").write_text(yaml.safe_dump({"models": entries}))


def timed(step) -> float:
    started = time.perf_counter()
    step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def forward(registry: ModelRegistry, name: str, batch: int) -> None:
    from PIL import Image

    with registry.using(name) as model:
        options = ModelOptions(top_k=1)
        prepared = model.preprocess([Image.new("RGB", (256, 256))] * batch, options)
        model.postprocess(model.forward(prepared.tensor), prepared.states(), options)


def run(device: torch.device, architecture: str, batch: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    home = Path(tempfile.mkdtemp(prefix="gpu-registry-"))
    write_models(home, architecture)
    registry = ModelRegistry(device, eviction="offload")
    register_declarative(registry, home, home / "models", home / "models.yaml")
    gc.collect()
    before = memory_allocated(device)
    if device.type == "cuda":
        # cuBLAS and cuBLASLt keep one workspace per handle and stream from the first matrix product of ANY model on
        # (32 + 1 MiB on an H200, torch 2.11): the process's, not a model's, so the baseline is taken after one.
        torch.nn.functional.linear(
            torch.ones(8, 8, device=device), torch.ones(8, 8, device=device), torch.ones(8, device=device)
        )
        torch.cuda.synchronize(device)
    baseline = memory_allocated(device)
    rows.append(("memory_allocated before any load", f"{before / MiB:.1f} MiB"))
    rows.append(("after one matrix product (cuBLAS workspaces)", f"{(baseline - before) / MiB:+.1f} MiB: the baseline"))

    cold = timed(lambda: registry.load("first"))
    weights = registry.resolve("first").device_bytes(device)
    rows.append(
        ("cold load (read file, build, copy to device)", f"{cold * 1000:.0f} ms, weights {weights / MiB:.1f} MiB")
    )
    rows.append(("memory_allocated after load", f"{(memory_allocated(device) - baseline) / MiB:+.1f} MiB"))
    forward_s = timed(lambda: forward(registry, "first", batch))
    rows.append((f"first forward, batch {batch}", f"{forward_s * 1000:.0f} ms"))

    offload = timed(lambda: registry.offload("first"))
    left = memory_allocated(device) - baseline
    rows.append(("offload to CPU RAM", f"{offload * 1000:.0f} ms; memory_allocated {left / MiB:+.2f} MiB vs baseline"))
    reload = timed(lambda: registry.load("first"))
    rows.append(("reload from CPU RAM", f"{reload * 1000:.0f} ms ({cold / max(reload, 1e-9):.1f}× faster than cold)"))

    network = weakref.ref(registry.resolve("first").model.network)
    unload = timed(lambda: registry.unload("first"))
    back = memory_allocated(device) - baseline
    gc.collect()
    rows.append(
        (
            "unload",
            f"{unload * 1000:.0f} ms; memory_allocated {back} bytes vs baseline "
            f"({'OK, exactly back' if back == 0 else 'NOT back to baseline'}); "
            f"network object freed: {network() is None}",
        )
    )

    budget = int(weights * 1.5)
    lru = ModelRegistry(device, memory_budget=budget, eviction="offload")
    register_declarative(lru, home, home / "models", home / "models.yaml")
    lru.load("first")
    lru.load("second")
    states = {key: lru.resolve(key).state for key in ("first", "second")}
    on_device = memory_allocated(device) - baseline
    rows.append(
        (
            f"budget {budget / MiB:.0f} MiB: load first, then second",
            f"states {states}; memory_allocated {on_device / MiB:+.1f} MiB (one model's weights)",
        )
    )
    again = timed(lambda: forward(lru, "first", batch))
    rows.append(
        (
            "request for the evicted model",
            f"{again * 1000:.0f} ms incl. transparent reload; states "
            f"{ {key: lru.resolve(key).state for key in ('first', 'second')} }",
        )
    )
    for key in ("first", "second"):
        lru.unload(key)
    rows.append(
        ("after unloading everything", f"memory_allocated {memory_allocated(device) - baseline} bytes vs baseline")
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "")
    parser.add_argument("--architecture", default="resnet50")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    if not args.device:
        print(
            "CUDA is not available on this machine (torch.cuda.is_available() is False): nothing to check.\n"
            "Run this on a GPU host, or pass --device cpu to exercise the same sequence on the CPU."
        )
        return 0
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = run(device, args.architecture, args.batch)
    width = max(len(step) for step, _ in rows)
    print(f"Registry memory check on {name} ({device}), {args.architecture}, torch {torch.__version__}")
    for step, result in rows:
        print(f"  {step.ljust(width)}  {result}")
    if device.type == "cuda":
        table = "\n".join(f"| {step} | {result} |" for step, result in rows)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            f"# Registry memory check\n\n{name}, {args.architecture}, torch {torch.__version__}\n\n"
            f"| step | result |\n|---|---|\n{table}\n",
            encoding="utf-8",
        )
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
