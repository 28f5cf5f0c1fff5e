"""Models for engine tests: a forward the test holds and releases, to fill queues and miss deadlines on purpose."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions


class GatedModel(ImageModel):
    """A tiny 'model' whose forward can be held: lets tests fill queues and miss deadlines on purpose."""

    info = ModelInfo(
        name="gated", version="1", task="classification", input_size=(8, 8), input_mode="L", labels=("dark", "bright")
    )

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []

    def load(self, device: torch.device) -> None:
        self.network = torch.nn.Identity()
        self.device = device

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[None]:
        arrays = [np.asarray(image.convert("L").resize((8, 8)), dtype=np.float32) / 255.0 for image in images]
        return Batch(torch.from_numpy(np.stack(arrays)).unsqueeze(1))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(batch.shape[0])
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        brightness = batch.flatten(1).mean(1, keepdim=True)
        return torch.cat([1 - brightness, brightness], dim=1)

    def postprocess(self, outputs: torch.Tensor, items: Sequence[None], options: ModelOptions) -> list[dict[str, Any]]:
        return [{"brightness": round(float(row[1]), 4)} for row in outputs]
