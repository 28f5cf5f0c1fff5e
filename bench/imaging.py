"""Benchmark ai_service.imaging against the naive recipes people copy, side by side in one run.

Usage: python bench/imaging.py [--quick]   (prints a table and writes bench/results/imaging.md)

Each case times ours and the baseline interleaved (same warm caches, same load) and reports the best time.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ai_service.imaging.alpha import color_key, color_key_array  # noqa: E402
from ai_service.imaging.convert import pils_to_batch, tensor_to_pil  # noqa: E402
from ai_service.imaging.io import decode_image  # noqa: E402
from ai_service.imaging.resize import resize_image  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "imaging.md"


@dataclass
class Row:
    """One comparison: our best time, the baseline's, and whether the target ratio was met."""

    name: str
    ours_ms: float
    base_ms: float
    baseline: str
    target: str
    check: Callable[[float], bool] | None

    @property
    def speedup(self) -> float:
        """Baseline time / our time (>1 means we are faster)."""
        return self.base_ms / self.ours_ms if self.ours_ms else float("inf")

    @property
    def verdict(self) -> str:
        """yes/NO against the target, or a dash for comparison-only rows."""
        if self.check is None:
            return "—"
        return "yes" if self.check(self.speedup) else "NO"


def timeit(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall-clock milliseconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def compare(
    ours: Callable[[], Any], base: Callable[[], Any], repeat: int, rounds: int = 3, base_repeat: int | None = None
) -> tuple[float, float]:
    """Interleave rounds of ours/baseline after a warm-up call each; return the best (minimum) time of each.

    The minimum is the least noisy estimate of intrinsic cost on a shared machine (as `timeit` advises);
    both sides are measured the same way, in alternation, so background load cannot favour either.
    """
    ours()
    base()
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a += timeit(ours, repeat)
        b += timeit(base, repeat if base_repeat is None else base_repeat)
    return min(a), min(b)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like image: scikit-image's astronaut upscaled, with sensor-like noise so JPEG has real texture."""
    from skimage import data

    base = cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noise = np.random.default_rng(seed).normal(0, 6, base.shape).astype(np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- baselines (the copied recipes)


def classic_color_key(im: Image.Image, key: tuple[int, int, int], tol: int) -> Image.Image:
    """The getdata()/putdata() loop from countless blog posts."""
    im = im.convert("RGBA")
    with warnings.catch_warnings():  # Pillow 13 deprecates getdata(); the recipe everyone copied still uses it
        warnings.simplefilter("ignore", DeprecationWarning)
        pixels = im.getdata()
    new = []
    for r, g, b, a in pixels:
        if abs(r - key[0]) <= tol and abs(g - key[1]) <= tol and abs(b - key[2]) <= tol:
            new.append((r, g, b, 0))
        else:
            new.append((r, g, b, a))
    out = Image.new("RGBA", im.size)
    out.putdata(new)
    return out


def bare_pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """The usual one-liner."""
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def bare_tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """The usual one-liner."""
    return Image.fromarray((t.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8))


def full_decode_resize(data: bytes, size: tuple[int, int]) -> Image.Image:
    """Baseline: decode every pixel, then downscale."""
    return Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.Resampling.BILINEAR)


def reduced_decode_resize(data: bytes, size: tuple[int, int]) -> Image.Image:
    """Ours: libjpeg DCT-domain downscale to >= size, then an exact resize."""
    return resize_image(decode_image(data, target_size=size), size, "bilinear")


# ---------------------------------------------------------------- cases


def run(quick: bool) -> list[Row]:
    """All comparisons; `quick` lowers repeats (CI smoke)."""
    rep = 2 if quick else 5
    rows: list[Row] = []

    rgba = np.random.default_rng(1).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
    rgba[::2, ::3, :3] = 255
    key_im = Image.fromarray(rgba)
    ours_key = color_key(key_im, (255, 255, 255), tolerance=8)
    assert np.array_equal(np.asarray(ours_key), np.asarray(classic_color_key(key_im, (255, 255, 255), 8)))
    o, b = compare(
        lambda: color_key(key_im, (255, 255, 255), tolerance=8),
        lambda: classic_color_key(key_im, (255, 255, 255), 8),
        repeat=10,
        base_repeat=1,
        rounds=2 if quick else 4,
    )
    rows.append(
        Row(
            "color key, 1024x1024 RGBA (PIL in/out)",
            o,
            b,
            "getdata()/putdata() loop",
            ">= 100x faster",
            lambda s: s >= 100,
        )
    )
    o2 = min(timeit(lambda: color_key_array(rgba, (255, 255, 255), 8), 30))
    rows.append(Row("color key, 1024x1024 RGBA (NumPy in/out)", o2, b, "getdata()/putdata() loop", "comparison", None))

    rgb_im = Image.fromarray(photo(1024, 1024))
    t = pils_to_batch([rgb_im])[0]
    for name, ours, base, label in [
        (
            "PIL -> tensor (1CHW float), 1024x1024",
            lambda: pils_to_batch([rgb_im]),
            lambda: bare_pil_to_tensor(rgb_im),
            "torch.from_numpy(np.array(im)).permute().float()/255",
        ),
        (
            "tensor -> PIL, 1024x1024",
            lambda: tensor_to_pil(t),
            lambda: bare_tensor_to_pil(t),
            "Image.fromarray((t.permute().numpy()*255).round().astype(uint8))",
        ),
    ]:
        o, b = compare(ours, base, repeat=rep * 4)
        rows.append(Row(name, o, b, label, "<= 1.5x their time", lambda s: s >= 1 / 1.5))

    jpeg_buf = io.BytesIO()
    Image.fromarray(photo(3000, 4000)).save(jpeg_buf, "JPEG", quality=90)
    jpeg = jpeg_buf.getvalue()
    assert reduced_decode_resize(jpeg, (224, 224)).size == (224, 224)
    o, b = compare(
        lambda: reduced_decode_resize(jpeg, (224, 224)), lambda: full_decode_resize(jpeg, (224, 224)), repeat=rep
    )
    rows.append(
        Row(
            f"4000x3000 JPEG ({len(jpeg) // 1024} KB) -> 224x224",
            o,
            b,
            "full decode + resize",
            ">= 3x faster",
            lambda s: s >= 3,
        )
    )
    return rows


def table(rows: list[Row]) -> str:
    """Markdown table of the results."""
    lines = [
        "| Benchmark | Ours (ms) | Baseline (ms) | Baseline | Speed-up | Target | Met |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.ours_ms:.2f} | {r.base_ms:.2f} | {r.baseline} | {r.speedup:.1f}x | {r.target} "
            f"| {r.verdict} |"
        )
    return "\n".join(lines)


def environment() -> str:
    """One line describing where the numbers came from."""
    return (
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), Pillow {Image.__version__}, "
        f"NumPy {np.__version__}; "
        f"{os.cpu_count()} CPUs ({platform.machine()}), CUDA {'yes' if torch.cuda.is_available() else 'no'}."
    )


def main(argv: list[str] | None = None) -> int:
    """Run, print, write the markdown; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and OpenCV threads (default 1: like-for-like with single-threaded baselines)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    started = time.perf_counter()
    rows = run(args.quick)
    text = table(rows)
    elapsed = time.perf_counter() - started
    print(text)
    print(f"\n{environment()}  Total {elapsed:.0f}s.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Imaging benchmarks\n\n"
        "Generated by `python bench/imaging.py`. Best of interleaved runs (ours and baseline alternate);\n"
        "speed-up = baseline time / our time.\n\n"
        f"{text}\n\n{environment()}\nRun took {elapsed:.0f}s on {time.strftime('%Y-%m-%d %H:%M')}.\n"
    )
    failed = [r.name for r in rows if r.verdict == "NO"]
    if failed:
        print("targets missed: " + "; ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
