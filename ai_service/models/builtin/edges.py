"""Built-in `edges`: a Canny-style edge map from fixed convolutions (blur, Sobel, non-maximum suppression)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ai_service.imaging.alpha import ALPHA_MODES
from ai_service.imaging.convert import tensor_to_pil
from ai_service.models.builtin.native import NativeResolutionModel, native_info

SIGMA = 1.0
LOW, HIGH = 0.02, 0.12  # gradient strength where output starts / saturates (a full black-white step ≈ 0.4)


def gaussian_taps(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-x * x / (2 * sigma * sigma))
    return taps / taps.sum()


class EdgeDetector(nn.Module):
    """Thin edges with strength: Gaussian blur, per-channel Sobel (strongest channel wins, so color-only
    edges count), non-maximum suppression along the gradient, then a soft LOW..HIGH ramp.

    Color is premultiplied by alpha first, so hidden colors under transparent pixels draw no edges
    and the silhouette of a cut-out does. Output: (N, 2, H, W) = edge strength and the input alpha.
    """

    def __init__(self, sigma: float = SIGMA) -> None:
        super().__init__()
        taps = gaussian_taps(sigma)
        self.radius = (taps.numel() - 1) // 2
        self.register_buffer("blur_x", taps.view(1, 1, 1, -1).repeat(4, 1, 1, 1), persistent=False)
        self.register_buffer("blur_y", taps.view(1, 1, -1, 1).repeat(4, 1, 1, 1), persistent=False)
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0
        sobel = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
        self.register_buffer("sobel", sobel.repeat(4, 1, 1, 1), persistent=False)

    def forward(self, rgba: torch.Tensor) -> torch.Tensor:
        n, _, h, w = rgba.shape
        alpha = rgba[:, 3:4]
        planes = torch.cat([rgba[:, :3] * alpha, alpha], dim=1)
        r = self.radius
        planes = F.conv2d(F.pad(planes, (r, r, 0, 0), mode="replicate"), self.blur_x, groups=4)
        planes = F.conv2d(F.pad(planes, (0, 0, r, r), mode="replicate"), self.blur_y, groups=4)
        gradients = F.conv2d(F.pad(planes, (1, 1, 1, 1), mode="replicate"), self.sobel, groups=4)
        gx, gy = gradients[:, 0::2], gradients[:, 1::2]
        magnitude = torch.sqrt(gx * gx + gy * gy)
        strongest = magnitude.argmax(dim=1, keepdim=True)
        magnitude = magnitude.gather(1, strongest)
        gx, gy = gx.gather(1, strongest), gy.gather(1, strongest)
        thin = magnitude * self._is_local_maximum(magnitude, gx, gy)
        edges = ((thin - LOW) / (HIGH - LOW)).clamp(0, 1)
        return torch.cat([edges, alpha], dim=1)

    @staticmethod
    def _is_local_maximum(magnitude: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        """1 where the magnitude is not smaller than both neighbours along the (quantised) gradient."""
        padded = F.pad(magnitude, (1, 1, 1, 1), mode="replicate")
        h, w = magnitude.shape[-2:]
        shifted = lambda dy, dx: padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]  # noqa: E731
        angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
        sector = (((angle + 22.5) // 45.0) % 4).long()  # 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135°
        keep = torch.zeros_like(magnitude, dtype=torch.bool)
        for index, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
            local_max = (magnitude > shifted(dy, dx)) & (magnitude >= shifted(-dy, -dx))  # ties: one pixel
            keep |= (sector == index) & local_max
        return keep.to(magnitude.dtype)


class EdgesModel(NativeResolutionModel):
    """Edge map of any image: white lines of edge strength on black; transparency kept."""

    info = native_info(
        "edges", "Edge map (Canny-style: Gaussian blur, color Sobel, non-maximum suppression) as fixed "
        "convolutions; white edges on black, alpha preserved. No downloaded weights.")

    def build(self) -> nn.Module:
        return EdgeDetector()

    def output_image(self, output: torch.Tensor, mode: str) -> Image.Image:
        return tensor_to_pil(output if mode in ALPHA_MODES else output[:1])
