"""Reduced precision, served only when it answers like fp32: the accuracy check a model passes at load.

A model asks for fp32, bf16, fp16 or auto (its models-file entry or class attribute, else AI_SERVICE_PRECISION).
Reduced precision needs the device to compute it natively (CPU: AMX or AVX-512 BF16/FP16; CUDA: bf16 from Ampere,
fp16 everywhere): emulated bf16 is slower than fp32, so an unsupported request falls back at once. Otherwise the
model runs its calibration images (its `calibration` folder, else its examples, else a few synthetic images) in
fp32 and under autocast, and keeps the reduced precision only if top-1 agrees often enough (classification) or the
largest absolute difference of the outputs stays small enough (other tasks); else it falls back to fp32 with a
logged warning. The engine's forward reads `model.precision_in_use`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from PIL import Image

from ai_service.models import pytree
from ai_service.models.base import WARMUP_SIDE, ImageModel, ModelOptions

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Classification: the lowest share of calibration images whose top-1 label must agree with fp32.
DEFAULT_MIN_AGREEMENT = 0.99
#: Other tasks: the largest absolute difference from fp32 allowed in any output value.
DEFAULT_MAX_ABS_ERROR = 0.05
#: Calibration images read from a folder (sorted by name), at most.
MAX_CALIBRATION_IMAGES = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class PrecisionCheck:
    """What the load-time check decided, as GET /api/v1/models shows it."""

    #: What the model (or the global default) asked for.
    requested: str
    #: What its forwards run in.
    used: str
    #: top1_agreement (classification) or max_abs_error (other tasks); None when nothing was measured.
    metric: str | None = None
    #: The measured agreement (0..1) or error; None when nothing was measured.
    value: float | None = None
    #: The bound it had to meet (agreement at least, error at most).
    tolerance: float | None = None
    #: Calibration images compared.
    samples: int = 0
    #: Why `used` is what it is, in words.
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def native_support(precision: str, device: torch.device) -> bool:
    """Does `device` compute `precision` natively (so it is faster, not slower, than fp32)?"""
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    flags = _cpu_flags()
    if precision == "bf16":
        return bool({"amx_bf16", "avx512_bf16"} & flags)
    return bool({"amx_fp16", "avx512_fp16"} & flags)


def resolve(requested: str, device: torch.device) -> str:
    """`auto` → bf16 where native (fp16 on CUDA without bf16), else fp32; other values unchanged."""
    if requested != "auto":
        return requested
    for candidate in ("bf16", "fp16") if device.type == "cuda" else ("bf16",):
        if native_support(candidate, device):
            return candidate
    return "fp32"


def synthetic_images(mode: str, size: tuple[int, int]) -> list[Image.Image]:
    """Four inputs unlike each other (gradient, noise, checkerboard, gray) when a model has no examples."""
    width, height = size
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    planes = [
        ((x * 255 // max(1, width - 1) + y * 255 // max(1, height - 1)) // 2).astype(np.uint8),
        rng.integers(0, 256, (height, width), dtype=np.uint8),
        (((x // max(1, width // 8)) + (y // max(1, height // 8))) % 2 * 255).astype(np.uint8),
        np.full((height, width), 128, dtype=np.uint8),
    ]
    return [Image.fromarray(plane, "L").convert(mode) for plane in planes]


def calibration_images(model: ImageModel) -> list[Image.Image]:
    """The model's `calibration_dir` images, else its examples, else synthetic images at its input size."""
    from ai_service.imaging.io import decode_image

    folder = getattr(model, "calibration_dir", None)
    if folder is not None:
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = list(model.info.examples)
    images = []
    for path in paths[:MAX_CALIBRATION_IMAGES]:
        try:
            images.append(decode_image(path.read_bytes(), target_size=model.decode_size()))
        except Exception as error:  # noqa: BLE001 - one unreadable file must not stop the model loading
            logger.warning("model {}: calibration image {} unreadable: {}", model.info.key, path.name, error)
    if images:
        return images
    mode = model.info.input_mode if model.info.input_mode in ("L", "LA", "RGB", "RGBA") else "RGB"
    return synthetic_images(mode, model.info.input_size or (WARMUP_SIDE, WARMUP_SIDE))


def _float_leaves(output: Any) -> list[torch.Tensor]:
    return [
        leaf.detach().float().cpu()
        for leaf in pytree.leaves(output)
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
    ]


def measure(model: ImageModel, precision: str, images: list[Image.Image]) -> tuple[str, float]:
    """(metric, value): top-1 agreement of `precision` with fp32 (classification), else the largest abs error."""
    device = model.device or torch.device("cpu")
    classification = model.info.task == "classification"
    agree, worst = 0, 0.0
    options = ModelOptions(top_k=1)
    for image in images:
        batch = model.preprocess([image], options).tensor
        with torch.inference_mode():
            reference = _float_leaves(model.forward(batch))
            with torch.autocast(device_type=device.type, dtype=DTYPES[precision]):
                reduced = _float_leaves(model.forward(batch))
        if classification:
            agree += int(reference[0].reshape(-1).argmax() == reduced[0].reshape(-1).argmax())
        for ref, red in zip(reference, reduced):
            error = (ref - red).abs().max().item() if ref.numel() else 0.0
            worst = max(worst, error if math.isfinite(error) else math.inf)
    if classification:
        return "top1_agreement", agree / len(images)
    return "max_abs_error", worst


def settle(model: ImageModel, default: str) -> PrecisionCheck:
    """Decide the loaded model's precision (its own wish, else `default`), set `model.precision_in_use`, return why."""
    device = model.device or torch.device("cpu")
    requested = getattr(model, "precision", None) or default
    wanted = resolve(requested, device)
    check = _check(model, requested, wanted, device)
    model.precision_in_use = check.used  # type: ignore[attr-defined]
    model.precision_check = check  # type: ignore[attr-defined]
    if check.used != wanted:
        logger.warning("model {}: serving fp32 instead of {}: {}", model.info.key, wanted, check.reason)
    elif wanted != "fp32":
        logger.info("model {}: serving {} ({})", model.info.key, wanted, check.reason)
    return check


def _check(model: ImageModel, requested: str, wanted: str, device: torch.device) -> PrecisionCheck:
    if wanted == "fp32":
        reason = "fp32 requested" if requested == "fp32" else f"{device.type} has no native reduced precision"
        return PrecisionCheck(requested, "fp32", reason=reason)
    if not native_support(wanted, device):
        return PrecisionCheck(requested, "fp32", reason=f"{device.type} does not compute {wanted} natively")
    classification = model.info.task == "classification"
    own = getattr(model, "precision_tolerance", None)
    tolerance = own if own is not None else (DEFAULT_MIN_AGREEMENT if classification else DEFAULT_MAX_ABS_ERROR)
    images = calibration_images(model)
    try:
        metric, value = measure(model, wanted, images)
    except Exception as error:  # noqa: BLE001 - a model that cannot run reduced still serves in fp32
        return PrecisionCheck(requested, "fp32", samples=len(images), reason=f"{wanted} forward failed: {error}")
    passed = value >= tolerance if classification else value <= tolerance
    comparison = f"{metric} {value:.4g} {'≥' if classification else '≤'} {tolerance:g}"
    if not passed:
        comparison = f"{metric} {value:.4g} misses the tolerance {tolerance:g}"
    return PrecisionCheck(
        requested,
        wanted if passed else "fp32",
        metric,
        round(value, 6) if math.isfinite(value) else None,
        tolerance,
        len(images),
        f"{comparison} on {len(images)} calibration image(s)",
    )
