"""The built-in `digits-segment`: colors every pixel of a picture by the handwritten digit it belongs to."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ai_service.imaging.geometry import Geometry
from ai_service.models import tasks
from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions
from ai_service.models.builtin.scene_networks import MEAN, SIDE, STD, SegmentNet, fit_scene, load_weights

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "digits-segment.pt"
LABELS = ("background", *(str(i) for i in range(10)))
#: The fewest input pixels a piece of ink needs to be a digit (a digit in the scenes covers about 80 or more).
MIN_PIECE = 20


@dataclass(frozen=True, slots=True)
class Fitted:
    """Per image: how it was fitted, and its alpha in input pixels (None when opaque) to carry into the mask."""

    geometry: Geometry
    alpha: np.ndarray | None


def classify(log_probabilities: torch.Tensor) -> np.ndarray:
    """(11, H, W) log-probabilities → (H, W) class indices (int64). First "ink?": P(ink) > 1/2, so that ink whose
    digit is uncertain is not lost to the background (a plain argmax would compare P(background) with P(ink and d)).
    Then "which digit?" once per 8-connected piece of ink, by the sum of its pixels' P(digit | ink): a digit is one
    blob (digits never touch in the scenes; touching ones would be read as one), and pixel by pixel its strokes'
    ends and edges read as other digits.
    Pieces under MIN_PIECE pixels are specks of texture, not digits, and go back to the background."""
    log_ink = torch.logsumexp(log_probabilities[1:], dim=0)
    ink = (log_ink > math.log(0.5)).to(torch.uint8).cpu().numpy()
    count, pieces = cv2.connectedComponents(ink, connectivity=8, ltype=cv2.CV_32S)
    which = (log_probabilities[1:] - log_ink).exp().flatten(1).T.cpu()
    votes = torch.zeros(count, which.shape[1]).index_add_(0, torch.from_numpy(pieces.ravel()).long(), which)
    winners = votes.argmax(dim=1).numpy() + 1
    winners[np.bincount(pieces.ravel(), minlength=count) < MIN_PIECE] = 0
    winners[0] = 0  # cv2's label 0 is the background
    return winners[pieces]


class DigitsSegmentModel(ImageModel[Fitted]):
    """U-Net-like digit segmenter trained on composed scenes (`ai-service train-digits-segment`)."""

    info = ModelInfo(
        name="digits-segment",
        version="1.0",
        task="segmentation",
        input_size=(SIDE, SIDE),
        input_mode="RGBA",
        labels=LABELS,
        mean=(MEAN,) * 4,
        std=(STD,) * 4,
        description="Colors each handwritten digit's pixels by its value, with a legend (a small U-Net trained on "
        "scenes composed from scikit-learn's digits). Transparent areas stay see-through in the mask.",
    )

    def __init__(self, weights_path: Path = WEIGHTS_PATH) -> None:
        super().__init__()
        self.weights_path = weights_path

    def estimated_bytes(self) -> int | None:
        return 2 * self.weights_path.stat().st_size if self.weights_path.is_file() else None

    def load(self, device: torch.device) -> None:
        self.network = load_weights(SegmentNet(), self.weights_path).to(device)
        self.device = device

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[Fitted]:
        arrays, items = [], []
        for image in images:
            array, geometry = fit_scene(image, options.fit or "letterbox")
            arrays.append(array)
            transparent = "A" in image.getbands() and image.getextrema()[-1][0] < 255
            items.append(Fitted(geometry, array[3] * STD + MEAN if transparent else None))
        return Batch(torch.from_numpy(np.stack(arrays)).to(self.device), items)

    def postprocess(
        self, outputs: torch.Tensor, items: Sequence[Fitted], options: ModelOptions
    ) -> list[dict[str, Any]]:
        results = []
        for logits, item in zip(outputs.float(), items):
            decided = classify(logits)
            scores = F.one_hot(torch.from_numpy(decided), len(self.info.labels)).permute(2, 0, 1)
            result = tasks.segmentation(scores, self.info.labels)
            left, top, right, bottom = item.geometry.content
            indices = decided[top:bottom, left:right]
            shares = np.bincount(indices.ravel(), minlength=len(self.info.labels)) / max(1, indices.size)
            result["classes"] = sorted(
                (
                    {**c, "fraction": round(float(shares[c["index"]]), 6)}
                    for c in result["classes"]
                    if shares[c["index"]] > 0
                ),
                key=lambda c: -c["fraction"],
            )
            if item.alpha is not None:
                rgba = np.asarray(result["mask"]).copy()
                rgba[..., 3] = np.rint(rgba[..., 3] * np.clip(item.alpha, 0, 1)).astype(np.uint8)
                result["mask"] = Image.fromarray(rgba, "RGBA")
            result["geometry"] = item.geometry
            results.append(result)
        return results
