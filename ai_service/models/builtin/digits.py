"""The built-in `digits` model: the classic SimpleCNN on MNIST-style 28×28 inputs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions, top_k_predictions

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "digits.pt"
CANVAS, BOX = 28, 20
ANALYSIS_SIDE = 256
INK_THRESHOLD = 0.2
_INDEX = np.arange(CANVAS, dtype=np.float64)
_ROWS, _COLS = _INDEX[:, None], _INDEX[None, :]
MEAN, STD = 0.1307, 0.3081


class SimpleCNN(nn.Module):
    """conv 1→10 k5, conv 10→20 k5, max-pool, fc 320→50→10 (the PyTorch MNIST example)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(0.25)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, p=0.3, training=self.training)
        return self.fc2(x)


def _gray_with_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Luminance (BT.601, 0–255 floats) and alpha (0–1) or None for opaque modes."""
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info or "A" in image.getbands() else "RGB")
    alpha = None
    if image.mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
    gray = image if image.mode == "L" else image.convert("L")
    width, height = gray.size
    return np.frombuffer(gray.tobytes(), np.uint8).reshape(height, width).astype(np.float32), alpha


def _median(values: np.ndarray) -> float:
    """np.median's value (mean of the two middle values for even sizes) at a third of its overhead."""
    n = values.size
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, (half - 1, half))
    return float((part[half - 1] + part[half]) / 2)  # float32 arithmetic, as np.mean of the two


def normalize_digit(image: Image.Image) -> np.ndarray:
    """Any upload → 28×28 floats in [0, 1]: white ink on black, fitted to 20 px, centered by mass.

    Per-request hot path: plain ufuncs and slicing instead of np.clip/np.median/np.roll, PIL buffers instead of
    array-interface round trips (same values, bit for bit, as the version the committed weights were trained with;
    tests/test_digits.py checks it). Each numpy call costs a few µs inside a served request, so fewer calls pay."""
    if max(image.size) > ANALYSIS_SIDE:
        image = image.copy()
        image.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BOX)
    gray, alpha = _gray_with_alpha(image)
    if alpha is not None:
        coverage = float(alpha.sum())
        ink_is_dark = coverage == 0 or float((gray * alpha).sum()) / coverage < 128
        gray = gray * alpha + (255.0 if ink_is_dark else 0.0) * (1.0 - alpha)
    background = _median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    if background > 127:
        gray, background = 255.0 - gray, 255.0 - background
    ink = np.maximum(gray - background, 0.0)
    peak = float(ink.max())
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    if peak < 1.0:
        return canvas
    ink /= peak
    mask = ink > INK_THRESHOLD
    rows, cols = mask.any(axis=1).nonzero()[0], mask.any(axis=0).nonzero()[0]
    crop = np.ascontiguousarray(ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], dtype=np.float32)
    height, width = crop.shape
    scale = BOX / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = Image.frombuffer("F", (width, height), crop, "raw", "F", 0, 1).resize(
        (new_w, new_h), Image.Resampling.BILINEAR
    )
    top, left = (CANVAS - new_h) // 2, (CANVAS - new_w) // 2
    placed = np.frombuffer(resized.tobytes(), np.float32).reshape(new_h, new_w)
    placed = np.minimum(np.maximum(placed, 0.0), 1.0)
    canvas[top:top + new_h, left:left + new_w] = placed
    mass = float(canvas.sum())
    ys_mass = float((_ROWS * canvas).sum())
    xs_mass = float((_COLS * canvas).sum())
    shift_y = int(min(max(round(13.5 - ys_mass / mass), -top), CANVAS - new_h - top))
    shift_x = int(min(max(round(13.5 - xs_mass / mass), -left), CANVAS - new_w - left))
    out = np.zeros_like(canvas)
    out[top + shift_y:top + shift_y + new_h, left + shift_x:left + shift_x + new_w] = placed
    return out


def to_input_tensor(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack normalized 28×28 arrays into the network's (N, 1, 28, 28) standardised input."""
    return torch.from_numpy((np.stack(arrays)[:, None] - MEAN) / STD)


class DigitsModel(ImageModel[None]):
    """Handwritten digit classifier trained on scikit-learn's digits (`ai-service train-digits`)."""

    info = ModelInfo(
        name="digits", version="1.0", task="classification", input_size=(28, 28), input_mode="L",
        labels=tuple(str(i) for i in range(10)), mean=(MEAN,), std=(STD,),
        description="Handwritten digit 0–9 (SimpleCNN trained on scikit-learn's digits). "
                    "Any colors, alpha, either polarity, any size.",
    )

    def __init__(self, weights_path: Path = WEIGHTS_PATH) -> None:
        super().__init__()
        self.weights_path = weights_path

    def load(self, device: torch.device) -> None:
        network = SimpleCNN()
        network.load_state_dict(torch.load(self.weights_path, map_location="cpu", weights_only=True))
        self.network = network.eval().to(device)
        self.device = device

    def decode_size(self) -> tuple[int, int] | None:
        return (ANALYSIS_SIDE, ANALYSIS_SIDE)

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[None]:
        return Batch(to_input_tensor([normalize_digit(image) for image in images]).to(self.device))

    def postprocess(self, outputs: torch.Tensor, items: Sequence[None], options: ModelOptions) -> list[dict[str, Any]]:
        return top_k_predictions(outputs, self.info.labels, options.top_k, self.info.name)
