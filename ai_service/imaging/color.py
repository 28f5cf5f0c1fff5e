"""Color spaces: RGB <-> HSV/HLS/LAB/YCrCb/YUV/gray on NumPy arrays and PIL images, with OpenCV's conventions."""

from __future__ import annotations

from typing import Final, Literal

import cv2
import numpy as np
from PIL import Image

from ai_service.imaging.io import normalize_mode
from ai_service.imaging.pixels import pixel_view

Space = Literal["rgb", "hsv", "hls", "lab", "ycrcb", "yuv", "gray"]
SPACES: Final = ("rgb", "hsv", "hls", "lab", "ycrcb", "yuv", "gray")
_TO_CV: Final = {
    "hsv": cv2.COLOR_RGB2HSV,
    "hls": cv2.COLOR_RGB2HLS,
    "lab": cv2.COLOR_RGB2Lab,
    "ycrcb": cv2.COLOR_RGB2YCrCb,
    "yuv": cv2.COLOR_RGB2YUV,
    "gray": cv2.COLOR_RGB2GRAY,
}
_FROM_CV: Final = {
    "hsv": cv2.COLOR_HSV2RGB,
    "hls": cv2.COLOR_HLS2RGB,
    "lab": cv2.COLOR_Lab2RGB,
    "ycrcb": cv2.COLOR_YCrCb2RGB,
    "yuv": cv2.COLOR_YUV2RGB,
    "gray": cv2.COLOR_GRAY2RGB,
}


def check_space(name: str) -> Space:
    """Validate a color-space name (ValueError listing the choices)."""
    if name not in SPACES:
        raise ValueError(f"unknown color space {name!r}; choose one of {', '.join(SPACES)}")
    return name  # type: ignore[return-value]


def convert_color(x: np.ndarray | Image.Image, src: Space = "rgb", dst: Space = "hsv") -> np.ndarray:
    """Convert HWC uint8/float32 (or a PIL image) between spaces with OpenCV's ranges (8-bit: H 0-179, LAB 0-255)."""
    check_space(src)
    check_space(dst)
    arr = _as_array(x)
    if src == dst:
        return arr.copy()
    rgb = arr if src == "rgb" else _cv_from(arr, src)
    return rgb if dst == "rgb" else cv2.cvtColor(np.ascontiguousarray(rgb), _TO_CV[dst])


def _as_array(x: np.ndarray | Image.Image) -> np.ndarray:
    """PIL -> RGB/gray array (alpha dropped); arrays pass through (HWC3/HW), float64 narrowed to float32."""
    if isinstance(x, Image.Image):
        im = normalize_mode(x)
        if im.mode in ("L", "LA"):
            return np.ascontiguousarray(pixel_view(im.getchannel("L") if im.mode == "LA" else im))
        return np.ascontiguousarray(pixel_view(im)[..., :3])
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    if x.ndim == 3 and x.shape[2] == 4:
        x = x[..., :3]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    return np.ascontiguousarray(x)


def _cv_from(arr: np.ndarray, src: str) -> np.ndarray:
    """Any supported space -> RGB with OpenCV."""
    return cv2.cvtColor(arr, _FROM_CV[src])


def color_image(im: Image.Image, dst: Space) -> Image.Image:
    """A PIL image whose 3 channels hold `dst` in OpenCV's 8-bit ranges (for viewing/saving), or L for gray."""
    out = convert_color(im, "rgb", dst)
    return Image.fromarray(out, "L" if out.ndim == 2 else "RGB")
