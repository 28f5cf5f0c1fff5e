"""The model contract: load on a device, preprocess images to a batch, forward, postprocess per image."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from PIL import Image

TASKS = ("classification", "image-to-image", "detection", "segmentation")


@dataclass(frozen=True)
class ModelInfo:
    """Metadata the API, the web page and the batcher read without loading the network."""

    name: str
    version: str = "1"
    task: str = "classification"
    input_size: tuple[int, int] = (224, 224)
    input_mode: str = "RGB"
    labels: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"model {self.name}: task must be one of {TASKS}, got {self.task!r}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["labels"] = list(self.labels)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data


class ImageModel:
    """Subclass this to serve a network: set `info`, implement the four steps; never touch Flask."""

    info: ModelInfo

    def __init__(self) -> None:
        self.device: torch.device | None = None
        self.network: torch.nn.Module | None = None

    def load(self, device: torch.device) -> None:
        """Build the network, load weights, move to `device`, switch to eval mode."""
        raise NotImplementedError

    def decode_size(self) -> tuple[int, int] | None:
        """The smallest (w, h) worth decoding to; lets JPEG decoding skip pixels the model never sees."""
        return self.info.input_size

    def preprocess(self, images: Sequence[Image.Image], options: dict[str, Any]) -> torch.Tensor:
        """Turn decoded images into one batch tensor (N, C, H, W) on the model's device."""
        raise NotImplementedError

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the network without autograd."""
        assert self.network is not None, f"model {self.info.name} is not loaded"
        with torch.inference_mode():
            return self.network(batch)

    def postprocess(self, outputs: torch.Tensor, options: dict[str, Any]) -> list[dict[str, Any]]:
        """Turn the batch output into one JSON-ready result per input image."""
        raise NotImplementedError

    def unload(self) -> None:
        """Drop every reference to weights so the memory can be returned."""
        self.network = None
        self.device = None

    @property
    def loaded(self) -> bool:
        return self.network is not None


def top_k_predictions(logits: torch.Tensor, labels: Sequence[str], top_k: int) -> list[dict[str, Any]]:
    """Softmax each row and keep the k best labels with their probabilities."""
    probabilities = torch.softmax(logits.float(), dim=1)
    k = max(1, min(int(top_k), probabilities.shape[1]))
    scores, indices = probabilities.topk(k, dim=1)
    results = []
    for row_scores, row_indices in zip(scores.tolist(), indices.tolist()):
        predictions = [{"label": labels[i] if i < len(labels) else str(i), "index": i, "score": round(s, 6)}
                       for s, i in zip(row_scores, row_indices)]
        results.append({"predictions": predictions})
    return results
