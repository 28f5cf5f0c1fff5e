"""Built-in `remove-bg`: cut the subject out of a plain (studio, green-screen, white) background into RGBA."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ai_service.models.builtin.native import NativeResolutionModel, native_info

TOLERANCE = 0.05  # YCbCr distance to the key that is surely background (≈ 13 levels: JPEG noise, slight shading)
SOFTNESS = 0.08  # beyond TOLERANCE + SOFTNESS a pixel is surely subject
EDGE_RADIUS = 3  # pixels next to background whose alpha is solved as a mix of key and nearby subject color
#: An image whose border is mostly see-through already had its background removed: its alpha is the matte and
#: nothing is keyed (keying from the few opaque border pixels would key the subject where it touches the edge).
MIN_OPAQUE_BORDER = 0.5
YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


class ColorKeyMatte(nn.Module):
    """(N, 4, H, W) RGBA → (N, 8, H, W): input RGBA, key-unmixed RGB, key alpha.

    The key color is the median of the opaque border pixels; when fewer than MIN_OPAQUE_BORDER of the border
    pixels are opaque the background is already transparent and key alpha is 1 everywhere. Alpha ramps with
    the YCbCr distance to it; within EDGE_RADIUS of clear background it is solved as the mix ratio between
    the key and the most distant color nearby, and the color is un-mixed from the key, so anti-aliased edges
    and hair keep their real color instead of a fringe of the old background.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("ycbcr", YCBCR.clone(), persistent=False)

    def forward(self, rgba: torch.Tensor) -> torch.Tensor:
        rgb, alpha = rgba[:, :3], rgba[:, 3:4]
        key, keyed = self._border_key(rgb, alpha)
        difference = torch.einsum("ij,njhw->nihw", self.ycbcr, rgb - key)
        distance = difference.pow(2).sum(dim=1, keepdim=True).sqrt()
        ramp = ((distance - TOLERANCE) / SOFTNESS).clamp(0, 1)
        size = 2 * EDGE_RADIUS + 1
        mostly_key = (ramp < 0.5).float()
        near_background = F.max_pool2d(mostly_key, size, stride=1, padding=EDGE_RADIUS) > 0
        local_far = F.max_pool2d(distance, size, stride=1, padding=EDGE_RADIUS)
        mixed = ((distance - TOLERANCE) / (local_far - TOLERANCE).clamp_min(SOFTNESS)).clamp(0, 1)
        key_alpha = torch.where(near_background, mixed, ramp)
        key_alpha = torch.where(keyed.view(-1, 1, 1, 1), key_alpha, torch.ones_like(key_alpha))
        unmixed = ((rgb - (1 - key_alpha) * key) / key_alpha.clamp_min(1e-3)).clamp(0, 1)
        return torch.cat([rgba, unmixed, key_alpha], dim=1)

    @staticmethod
    def _border_key(rgb: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, 1, 1) per-channel median of the opaque border pixels, and (N,) whether to key at all: only
        where most of the border is opaque (a border that is mostly transparent is an existing cut-out)."""
        def ring(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t[..., 0, :], t[..., -1, :], t[..., 1:-1, 0], t[..., 1:-1, -1]], dim=-1)

        colors, opaque = ring(rgb), ring(alpha)[:, 0] > 0.5
        keys = []
        for image_colors, image_opaque in zip(colors, opaque):
            chosen = image_colors[:, image_opaque] if bool(image_opaque.any()) else image_colors
            keys.append(chosen.median(dim=1).values)
        keyed = opaque.float().mean(dim=1) >= MIN_OPAQUE_BORDER
        return torch.stack(keys).view(-1, 3, 1, 1), keyed


def keep_border_connected(key_alpha: np.ndarray) -> np.ndarray:
    """True where a see-through pixel belongs to a region touching the image border (the background);
    key-colored areas enclosed by the subject (white eyes, shirt buttons) stay opaque."""
    candidate = (key_alpha < 255).astype(np.uint8)
    count, labels = cv2.connectedComponents(candidate, connectivity=8)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    touching = np.zeros(count, dtype=bool)
    touching[border] = True
    touching[0] = False
    return touching[labels]


class RemoveBackgroundModel(NativeResolutionModel):
    """Plain-background remover: RGBA output with soft, un-fringed edges; existing transparency is kept."""

    info = native_info(
        "remove-bg", "Remove a plain background (studio white, green screen, product shots): the color is "
        "read from the border, edges are un-mixed from it, enclosed areas stay. Outputs RGBA.")

    def build(self) -> nn.Module:
        return ColorKeyMatte()

    def output_image(self, output: torch.Tensor, mode: str) -> Image.Image:
        planes = output.permute(1, 2, 0).cpu().numpy()  # (h, w, 8) uint8
        original, unmixed, key_alpha = planes[..., :4], planes[..., 4:7], planes[..., 7]
        background = keep_border_connected(key_alpha)
        alpha = np.minimum(original[..., 3], np.where(background, key_alpha, 255).astype(np.uint8))
        rgb = np.where(background[..., None], unmixed, original[..., :3]) * (alpha[..., None] > 0)
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
