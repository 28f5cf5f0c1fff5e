"""The predict path, free of Flask: bytes → decode → preprocess → forward → postprocess, timed."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from PIL import Image

from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.io import decode_image
from ai_service.models.base import ImageModel
from ai_service.models.registry import ModelRegistry


@dataclass
class Upload:
    """One uploaded image as received: its bytes and the client's name for it (display only)."""

    data: bytes
    filename: str = ""


@dataclass
class Timer:
    """Accumulates milliseconds per stage for the `timing_ms` field."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + (now - started) * 1000.0, 3)
        return now


def decode_uploads(model: ImageModel, uploads: Sequence[Upload], max_pixels: int
                   ) -> list[Image.Image | ImageDecodeError]:
    """Decode each upload at the size the model needs; a bad item becomes its error, not an exception."""
    decoded: list[Image.Image | ImageDecodeError] = []
    for upload in uploads:
        try:
            decoded.append(decode_image(upload.data, max_pixels=max_pixels, target_size=model.decode_size()))
        except ImageDecodeError as error:
            decoded.append(error)
    return decoded


def predict(registry: ModelRegistry, model_name: str, uploads: Sequence[Upload], options: dict[str, Any],
            max_pixels: int) -> dict[str, Any]:
    """Run one model over the uploads; returns per-item results (or errors) and the stage timings."""
    timer = Timer()
    started = time.perf_counter()
    entry = registry.entry(model_name)
    was_loaded = entry.state == "loaded"
    model = registry.get(model_name)
    if not was_loaded:
        started = timer.add("load", started)
    decoded = decode_uploads(model, uploads, max_pixels)
    started = timer.add("decode", started)
    images = [item for item in decoded if isinstance(item, Image.Image)]
    outputs: list[dict[str, Any]] = []
    if images:
        batch = model.preprocess(images, options)
        started = timer.add("preprocess", started)
        raw = model.forward(batch)
        started = timer.add("forward", started)
        outputs = model.postprocess(raw, options)
        timer.add("postprocess", started)
    results: list[dict[str, Any]] = []
    produced = iter(outputs)
    for upload, item in zip(uploads, decoded):
        if isinstance(item, ImageDecodeError):
            results.append({"filename": upload.filename, "error": {"code": item.code, "message": item.message},
                            "status": item.status})
        else:
            results.append({"filename": upload.filename, "width": item.width, "height": item.height,
                            "mode": item.mode, **next(produced)})
    timer.stages["total"] = round(sum(v for k, v in timer.stages.items()), 3)
    return {"model": model.info.name, "version": model.info.version, "task": model.info.task,
            "results": results, "timing_ms": timer.stages}
