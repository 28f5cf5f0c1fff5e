"""The built-in `digits-detect`: finds every handwritten digit in a picture, with a box, the digit and a score."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import batched_nms

from ai_service.imaging.geometry import Geometry
from ai_service.models import tasks
from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions
from ai_service.models.builtin.scene_networks import (
    CENTER,
    DIGITS,
    MEAN,
    OFFSET,
    SIDE,
    SIZE,
    STD,
    STRIDE,
    DetectNet,
    fit_scene,
    load_weights,
)

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "digits-detect.pt"
#: Boxes scoring below this are dropped unless the request asks otherwise (score_threshold).
SCORE_THRESHOLD = 0.3
#: Two boxes of the same digit overlapping more than this are one digit found twice: the lower score goes.
NMS_IOU = 0.5
#: Readings listed per center: the likeliest digits there (each above the score threshold).
READINGS = 3
MAX_PEAKS = 100


def decode(output: torch.Tensor, threshold: float) -> torch.Tensor:
    """One image's (15, G, G) maps → (K, 6) [x0, y0, x1, y1, score, digit] in input pixels.

    Centers are the local maxima of the heatmap; each gives a box per likely digit (the best READINGS), scored
    P(center) × P(digit), so an ambiguous digit is listed as each reading at its own confidence, as detectors
    with one heatmap per class do. Boxes of one digit overlapping a better one by more than NMS_IOU are dropped."""
    output = output.float()
    heat = output[CENTER].sigmoid()
    peaks = heat * (F.max_pool2d(heat[None, None], 3, stride=1, padding=1)[0, 0] == heat)
    grid = heat.shape[-1]
    centers, flat = peaks.flatten().topk(min(MAX_PEAKS, peaks.numel()))
    digit_scores, digits = output[DIGITS, flat // grid, flat % grid].softmax(dim=0).topk(READINGS, dim=0)
    scores, digits, flat = (centers[None] * digit_scores).flatten(), digits.flatten(), flat.repeat(READINGS)
    keep = scores >= threshold
    scores, digits, iy, ix = scores[keep], digits[keep], flat[keep] // grid, flat[keep] % grid
    width, height = output[SIZE][0, iy, ix].exp(), output[SIZE][1, iy, ix].exp()
    cx, cy = ix + output[OFFSET][0, iy, ix], iy + output[OFFSET][1, iy, ix]
    boxes = torch.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], dim=1) * STRIDE
    kept = batched_nms(boxes, scores, digits, NMS_IOU)
    return torch.cat([boxes[kept], scores[kept, None], digits[kept, None].float()], dim=1)


class DigitsDetectModel(ImageModel[Geometry]):
    """CenterNet-style digit detector trained on composed scenes (`ai-service train-digits-detect`)."""

    info = ModelInfo(
        name="digits-detect",
        version="1.0",
        task="detection",
        input_size=(SIDE, SIDE),
        input_mode="RGBA",
        labels=tuple(str(i) for i in range(10)),
        mean=(MEAN,) * 4,
        std=(STD,) * 4,
        description="Finds handwritten digits in a picture: a box, the digit and a score for each (a small "
        "CenterNet trained on scenes composed from scikit-learn's digits). Any background, alpha, size.",
    )

    def __init__(self, weights_path: Path = WEIGHTS_PATH) -> None:
        super().__init__()
        self.weights_path = weights_path

    def estimated_bytes(self) -> int | None:
        return 2 * self.weights_path.stat().st_size if self.weights_path.is_file() else None

    def load(self, device: torch.device) -> None:
        self.network = load_weights(DetectNet(), self.weights_path).to(device)
        self.device = device

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[Geometry]:
        fitted = [fit_scene(image, options.fit or "letterbox") for image in images]
        tensor = torch.from_numpy(np.stack([array for array, _ in fitted])).to(self.device)
        return Batch(tensor, [geometry for _, geometry in fitted])

    def postprocess(
        self, outputs: torch.Tensor, items: Sequence[Geometry], options: ModelOptions
    ) -> list[dict[str, Any]]:
        threshold = SCORE_THRESHOLD if options.score_threshold is None else options.score_threshold
        results = []
        for output, geometry in zip(outputs, items):
            result = tasks.detections(decode(output, threshold), self.info.labels, threshold)
            result["geometry"] = geometry
            results.append(result)
        return results
