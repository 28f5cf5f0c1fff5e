"""The two small networks behind `digits-detect` and `digits-segment`, and the input both read.

Input: the image letterboxed (by default) into SIDE×SIDE, four channels: RGB seen over mid-gray where it is
transparent, and alpha (the padding is alpha 0), so transparent PNGs and letterbox bars look alike to the network.
Both share one encoder (features at 1/2, 1/4 and 1/8 of the input); the detector is CenterNet-style (a class
heatmap, box size and sub-cell offset at 1/4), the segmenter a U-Net (its own full-resolution stage, decoded
back up through 1/4 and 1/2 with skip connections: ink or not at the input's full resolution, which digit at 1/4).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ai_service.imaging.geometry import Geometry
from ai_service.imaging.io import normalize_mode
from ai_service.imaging.resize import fit_image

SIDE = 128
#: What a transparent pixel is seen over (0-1), and the channels' normalization.
GRAY = 0.5
MEAN, STD = 0.5, 0.25
#: Output stride of the detector's maps, and its channels: center heatmap logit, digit logits, log size, offset.
STRIDE = 4
CLASSES = 10
CENTER, DIGITS, SIZE, OFFSET = (
    0,
    slice(1, 1 + CLASSES),
    slice(1 + CLASSES, 3 + CLASSES),
    slice(3 + CLASSES, 5 + CLASSES),
)


def fit_scene(image: Image.Image, fit: str = "letterbox", side: int = SIDE) -> tuple[np.ndarray, Geometry]:
    """Any image → (4, side, side) float32 network input (see the module docstring) and how it was fitted."""
    rgba = normalize_mode(image).convert("RGBA")
    fitted, geometry = fit_image(rgba, (side, side), fit, "area", pad_color=None)
    pixels = np.asarray(fitted, dtype=np.float32) / 255.0
    alpha = pixels[..., 3:]
    seen = pixels[..., :3] * alpha + GRAY * (1.0 - alpha)
    return (np.concatenate([seen, alpha], axis=2).transpose(2, 0, 1) - MEAN) / STD, geometry


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Encoder(nn.Module):
    """4 channels → features at 1/2 (16 ch), 1/4 (32 ch) and 1/8 (64 ch, wide receptive field to read a digit)."""

    def __init__(self) -> None:
        super().__init__()
        self.by2 = nn.Sequential(_conv(4, 16, 2), _conv(16, 16))
        self.by4 = nn.Sequential(_conv(16, 32, 2), _conv(32, 32))
        self.by8 = nn.Sequential(_conv(32, 64, 2), _conv(64, 64), _conv(64, 64, dilation=2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        half = self.by2(x)
        quarter = self.by4(half)
        return half, quarter, self.by8(quarter)


class DetectNet(nn.Module):
    """(N, 4, S, S) → (N, 15, S/4, S/4): a digit-center heatmap logit, 10 digit logits (softmax: which digit is
    centered there), log box size in cells (w, h) and the center's offset within its cell."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.lateral = nn.Conv2d(64, 32, 1)
        self.fuse = _conv(32, 32)
        self.head = nn.Sequential(_conv(32, 32), nn.Conv2d(32, CLASSES + 5, 1))
        nn.init.constant_(self.head[1].bias[CENTER], -2.2)  # CenterNet's prior: few cells hold a center

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, quarter, eighth = self.encoder(x)
        fused = self.fuse(quarter + F.interpolate(self.lateral(eighth), scale_factor=2.0, mode="nearest"))
        return self.head(fused)


class SegmentNet(nn.Module):
    """(N, 4, S, S) → (N, 11, S, S) log-probabilities of background and the ten digits.

    Factored as P(digit ink) × P(which digit | ink), so that training can weigh the two questions apart: whether a
    pixel is ink is asked of every pixel, which digit only of the ink (a tenth of the pixels or less)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        #: Full resolution: thin strokes' edges are placed here, from the pixels themselves.
        self.full = _conv(4, 8)
        self.up_quarter = nn.Conv2d(64, 32, 1)
        self.decode_quarter = _conv(32, 32)
        self.up_half = nn.Conv2d(32, 16, 1)
        self.decode_half = _conv(16, 16)
        self.up_full = nn.Conv2d(16, 8, 1)
        self.decode_full = nn.Sequential(_conv(8, 8), _conv(8, 8))
        #: Ink or not at full resolution; which digit at 1/4 (a question of the whole digit's shape, not of edges),
        #: then enlarged: up_quarter, decode_quarter and which are shaped like DetectNet's lateral, fuse and head,
        #: so that training can start from the detector, which already reads digits there.
        self.ink = nn.Conv2d(8, 1, 1)
        self.which = nn.Sequential(_conv(32, 32), nn.Conv2d(32, CLASSES, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half, quarter, eighth = self.encoder(x)
        quarter = self.decode_quarter(quarter + F.interpolate(self.up_quarter(eighth), scale_factor=2.0))
        half = self.decode_half(half + F.interpolate(self.up_half(quarter), scale_factor=2.0))
        up = F.interpolate(self.up_full(half), scale_factor=2.0, mode="bilinear", align_corners=False)
        ink = self.ink(self.decode_full(self.full(x) + up))
        digits = F.interpolate(self.which(quarter), scale_factor=4.0, mode="bilinear", align_corners=False)
        return torch.cat([F.logsigmoid(-ink), F.logsigmoid(ink) + F.log_softmax(digits, dim=1)], dim=1)


def save_weights(network: nn.Module, path: Path) -> bytes:
    """The state_dict in float16 (half the bytes; the networks run in float32), written to `path`."""
    state = {key: value.half() if value.is_floating_point() else value for key, value in network.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def load_weights(network: nn.Module, path: Path) -> nn.Module:
    """Fill `network` from a save_weights file (float16 back to float32), in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(
        {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    )
    return network.eval()
