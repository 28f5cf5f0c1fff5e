"""Small, exact models for the web tests: one per task the page draws (image output, boxes, masks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions


class _AlphaModel(ImageModel[None]):
    """Works on one image at a time at its own size; the 'network' is an identity kept as a real module."""

    def load(self, device: torch.device) -> None:
        self.network = torch.nn.Identity().to(device)
        self.device = device

    def decode_size(self) -> tuple[int, int] | None:
        return None

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[None]:
        arrays = [np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0 for image in images]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError("this test model needs images of one size per request")
        return Batch(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(self.device))

    @staticmethod
    def _rgba(outputs: torch.Tensor) -> list[np.ndarray]:
        return [(item.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8) for item in outputs]


class NegativeModel(_AlphaModel):
    """Image-to-image: the color negative, transparency kept (so the page's checkerboard matters)."""

    info = ModelInfo(
        name="negative",
        version="1",
        task="image-to-image",
        input_size=None,
        input_mode="RGBA",
        description="Test double: inverts colors, keeps alpha.",
    )

    def postprocess(self, outputs: torch.Tensor, items: Sequence[None], options: ModelOptions) -> list[dict[str, Any]]:
        results = []
        for rgba in self._rgba(outputs):
            rgba[..., :3] = 255 - rgba[..., :3]
            results.append({"image": Image.fromarray(rgba, "RGBA")})
        return results


class InkBoxModel(_AlphaModel):
    """Detection: one box around the opaque pixels, labelled 'ink'."""

    info = ModelInfo(
        name="inkbox",
        version="1",
        task="detection",
        input_size=None,
        input_mode="RGBA",
        description="Test double: a box around the visible ink.",
    )

    def postprocess(self, outputs: torch.Tensor, items: Sequence[None], options: ModelOptions) -> list[dict[str, Any]]:
        results = []
        for rgba in self._rgba(outputs):
            ys, xs = np.nonzero(rgba[..., 3] > 127)
            boxes = (
                []
                if not len(xs)
                else [
                    {
                        "label": "ink",
                        "score": 0.9,
                        "box": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                    }
                ]
            )
            results.append({"detections": boxes})
        return results


class AlphaMaskModel(_AlphaModel):
    """Segmentation: the alpha channel as a red mask."""

    info = ModelInfo(
        name="alphamask",
        version="1",
        task="segmentation",
        input_size=None,
        input_mode="RGBA",
        labels=("background", "ink"),
        description="Test double: the opaque pixels as a mask.",
    )

    def postprocess(self, outputs: torch.Tensor, items: Sequence[None], options: ModelOptions) -> list[dict[str, Any]]:
        results = []
        for rgba in self._rgba(outputs):
            mask = np.zeros_like(rgba)
            mask[..., 0] = 230
            mask[..., 3] = rgba[..., 3]
            results.append({"mask": Image.fromarray(mask, "RGBA"), "labels": list(self.info.labels)})
        return results


def register_doubles(app) -> None:
    """Add the doubles to an app's registry (the built-ins stay)."""
    for model in (NegativeModel(), InkBoxModel(), AlphaMaskModel()):
        app.extensions["ai_service"].registry.register(model)
