"""Colour spaces: RGB <-> HSV/HLS/LAB/YCrCb/YUV/gray on NumPy/PIL (OpenCV conventions) and on torch tensors."""
from __future__ import annotations

from functools import lru_cache
from typing import Final, Literal

import cv2
import numpy as np
import torch
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
    """Validate a colour-space name (ValueError listing the choices)."""
    if name not in SPACES:
        raise ValueError(f"unknown colour space {name!r}; choose one of {', '.join(SPACES)}")
    return name  # type: ignore[return-value]


# ---------------------------------------------------------------- NumPy / PIL (OpenCV)


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


# ---------------------------------------------------------------- torch (float, batched, any device)

#: sRGB primaries, D65 (the matrix OpenCV uses).
_RGB2XYZ: Final = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_XYZ2RGB: Final = ((3.240479, -1.53715, -0.498535), (-0.969256, 1.875991, 0.041556), (0.055648, -0.204043, 1.057311))
_WHITE: Final = (0.950456, 1.0, 1.088754)
_LAB_EPS: Final = 0.008856
_LAB_KAPPA: Final = 903.3


def convert_color_tensor(
    t: torch.Tensor, src: Space = "rgb", dst: Space = "hsv", *, scale: Literal["float", "8bit"] = "float"
) -> torch.Tensor:
    """(..., C, H, W) float tensor between spaces; 'float' = OpenCV float32 ranges, '8bit' = OpenCV uint8 ranges.

    float ranges: RGB/gray/Y/S/V/L(hls) in [0,1], H in degrees [0,360), LAB L in [0,100] and a/b signed,
    Cr/Cb/U/V centred on 0.5.  With scale='8bit' the input (when src != 'rgb') and output use 0-255 with
    H in 0-179 and LAB L*255/100, a+128, b+128 (values are not rounded).
    """
    check_space(src)
    check_space(dst)
    if t.dtype == torch.uint8 and src == "rgb" and dst == "lab" and scale == "8bit":
        return rgb_to_lab_8bit(t)
    if not t.is_floating_point():
        t = t.float() / 255.0 if src == "rgb" or scale == "float" else t.float()
    if src != "rgb" and scale == "8bit":
        t = from_8bit(t, src)
    rgb = t if src == "rgb" else _TENSOR_FROM[src](t)
    out = rgb if dst == "rgb" else _TENSOR_TO[dst](rgb)
    return to_8bit(out, dst) if scale == "8bit" else out


def to_8bit(t: torch.Tensor, space: Space) -> torch.Tensor:
    """Float-range values -> OpenCV's 8-bit ranges (still float, unrounded)."""
    if space in ("hsv", "hls"):
        return torch.cat([t[..., :1, :, :] / 2.0, t[..., 1:, :, :] * 255.0], dim=-3)
    if space == "lab":
        return torch.cat([t[..., :1, :, :] * (255.0 / 100.0), t[..., 1:, :, :] + 128.0], dim=-3)
    if space in ("ycrcb", "yuv"):  # chroma is centred on 0.5 in float but on 128 (not 127.5) in 8 bits
        return torch.cat([t[..., :1, :, :] * 255.0, (t[..., 1:, :, :] - 0.5) * 255.0 + 128.0], dim=-3)
    return t * 255.0


def from_8bit(t: torch.Tensor, space: Space) -> torch.Tensor:
    """OpenCV 8-bit ranges -> float ranges (inverse of to_8bit)."""
    if space in ("hsv", "hls"):
        return torch.cat([t[..., :1, :, :] * 2.0, t[..., 1:, :, :] / 255.0], dim=-3)
    if space == "lab":
        return torch.cat([t[..., :1, :, :] * (100.0 / 255.0), t[..., 1:, :, :] - 128.0], dim=-3)
    if space in ("ycrcb", "yuv"):
        return torch.cat([t[..., :1, :, :] / 255.0, (t[..., 1:, :, :] - 128.0) / 255.0 + 0.5], dim=-3)
    return t / 255.0


def _channels(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first three channels of (..., C, H, W)."""
    if t.shape[-3] < 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(t.shape)}")
    return t[..., 0, :, :], t[..., 1, :, :], t[..., 2, :, :]


def _stack(*planes: torch.Tensor) -> torch.Tensor:
    """Planes -> (..., C, H, W)."""
    return torch.stack(planes, dim=-3)


def _hue(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor, vmax: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Hue in degrees [0,360) from RGB, max and chroma (0 where chroma is 0), as OpenCV defines it."""
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(vmax == r, (g - b) / safe, torch.where(vmax == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = h * 60.0
    h = torch.where(h < 0, h + 360.0, h)
    return torch.where(delta > 0, h, torch.zeros_like(h))


def rgb_to_hsv(t: torch.Tensor) -> torch.Tensor:
    """RGB [0,1] -> HSV (H degrees, S, V in [0,1])."""
    r, g, b = _channels(t)
    vmax = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    delta = vmax - vmin
    s = torch.where(vmax > 0, delta / torch.where(vmax > 0, vmax, torch.ones_like(vmax)), torch.zeros_like(vmax))
    return _stack(_hue(r, g, b, vmax, delta), s, vmax)


def hsv_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """HSV (H degrees) -> RGB [0,1]."""
    h, s, v = _channels(t)
    return _from_hue(h, v * s, v - v * s)


def _from_hue(h: torch.Tensor, chroma: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """RGB from hue (degrees), chroma and the minimum component, branch-free: c_n = max - chroma * w_n(h)."""
    hp = torch.remainder(h, 360.0) / 60.0
    k = torch.stack([torch.remainder(5.0 + hp, 6.0), torch.remainder(3.0 + hp, 6.0), torch.remainder(1.0 + hp, 6.0)], dim=-3)
    weight = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return (m + chroma).unsqueeze(-3) - chroma.unsqueeze(-3) * weight


def rgb_to_hls(t: torch.Tensor) -> torch.Tensor:
    """RGB [0,1] -> HLS (H degrees, L, S in [0,1])."""
    r, g, b = _channels(t)
    vmax = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    delta = vmax - vmin
    lum = (vmax + vmin) / 2.0
    denom = torch.where(lum < 0.5, vmax + vmin, 2.0 - vmax - vmin)
    s = torch.where(delta > 0, delta / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(delta))
    return _stack(_hue(r, g, b, vmax, delta), lum, s)


def hls_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """HLS (H degrees) -> RGB [0,1]."""
    h, lum, s = _channels(t)
    chroma = (1.0 - torch.abs(2.0 * lum - 1.0)) * s
    return _from_hue(h, chroma, lum - chroma / 2.0)


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function inverse (gamma-encoded -> linear light)."""
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp_min(0.0) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function (linear light -> gamma-encoded)."""
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp_min(0.0) ** (1.0 / 2.4) - 0.055)


def _matrix(values: tuple[tuple[float, float, float], ...], ref: torch.Tensor) -> torch.Tensor:
    """A constant matrix on ref's device and dtype."""
    return torch.tensor(values, dtype=ref.dtype, device=ref.device)


def _apply(m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """3x3 matrix over the channel axis of (..., 3, H, W)."""
    return torch.einsum("ij,...jhw->...ihw", m, t[..., :3, :, :])


def rgb_to_lab(t: torch.Tensor) -> torch.Tensor:
    """sRGB [0,1] -> CIE L*a*b* (D65; L in [0,100]) with OpenCV's constants."""
    xyz = _apply(_matrix(_RGB2XYZ, t), _srgb_to_linear(t))
    white = torch.tensor(_WHITE, dtype=t.dtype, device=t.device).reshape(3, 1, 1)
    xyz = xyz / white
    f = torch.where(xyz > _LAB_EPS, xyz.clamp_min(1e-12) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    y = xyz[..., 1, :, :]
    lum = torch.where(y > _LAB_EPS, 116.0 * f[..., 1, :, :] - 16.0, _LAB_KAPPA * y)
    return _stack(lum, 500.0 * (f[..., 0, :, :] - f[..., 1, :, :]), 200.0 * (f[..., 1, :, :] - f[..., 2, :, :]))


def lab_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (L in [0,100]) -> sRGB [0,1] (clipped) with OpenCV's constants."""
    lum, a, b = _channels(t)
    fy = (lum + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0
    y = torch.where(lum > _LAB_KAPPA * _LAB_EPS, fy**3, lum / _LAB_KAPPA)
    x = torch.where(fx**3 > _LAB_EPS, fx**3, (fx - 16.0 / 116.0) / 7.787)
    z = torch.where(fz**3 > _LAB_EPS, fz**3, (fz - 16.0 / 116.0) / 7.787)
    white = torch.tensor(_WHITE, dtype=t.dtype, device=t.device).reshape(3, 1, 1)
    xyz = _stack(x, y, z) * white
    inv = _matrix(_XYZ2RGB, t)
    return _linear_to_srgb(_apply(inv, xyz)).clamp(0.0, 1.0)


@lru_cache(maxsize=1)
def _lab8_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's 8-bit LAB tables: sRGB->linear in 1/2040 steps, f(t) in 1/32768 steps, 12-bit XYZ/white matrix."""
    x = np.arange(256) / 255.0
    gamma = np.rint(2040.0 * np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)).astype(np.int64)
    xx = np.arange(3072) / 2040.0
    cbrt = np.rint(32768.0 * np.where(xx < _LAB_EPS, xx * 7.787 + 16.0 / 116.0, np.cbrt(xx))).astype(np.int64)
    coeffs = np.rint(4096.0 * np.asarray(_RGB2XYZ) / np.asarray(_WHITE)[:, None]).astype(np.int64)
    return gamma, cbrt, coeffs


def rgb_to_lab_8bit(t: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) RGB -> LAB in OpenCV's 8-bit ranges using its fixed-point tables (matches cv2 to 1 LSB)."""
    gamma_np, cbrt_np, coeffs_np = _lab8_tables()
    gamma = torch.from_numpy(gamma_np.astype(np.int32)).to(t.device)
    cbrt = torch.from_numpy(cbrt_np.astype(np.int32)).to(t.device)
    r, g, b = (gamma[c.long()] for c in _channels(t))
    top = cbrt.numel() - 1

    def f(row: np.ndarray) -> torch.Tensor:
        """f(X/Xn) from OpenCV's cube-root table for one XYZ row."""
        acc = r * int(row[0]) + g * int(row[1]) + b * int(row[2])
        return cbrt[((acc + 2048) >> 12).clamp_(0, top).long()]

    fx, fy, fz = f(coeffs_np[0]), f(coeffs_np[1]), f(coeffs_np[2])
    half = 1 << 14
    lum = (((116 * 255 + 50) // 100) * fy - (16 * 255 * 32768 + 50) // 100 + half) >> 15
    a = (500 * (fx - fy) + 128 * 32768 + half) >> 15
    b_ = (200 * (fy - fz) + 128 * 32768 + half) >> 15
    return _stack(lum, a, b_).clamp_(0, 255).float()


#: OpenCV's float YCrCb / YUV coefficients (colour.hpp).
_Y: Final = (0.299, 0.587, 0.114)


def _luma(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """BT.601 luma, as OpenCV computes Y."""
    return _Y[0] * r + _Y[1] * g + _Y[2] * b


def _to_luma_differences(t: torch.Tensor, red_gain: float, blue_gain: float, red_first: bool) -> torch.Tensor:
    """Y, then (R-Y)*red_gain + 0.5 and (B-Y)*blue_gain + 0.5: YCrCb and YUV differ only in gains and plane order."""
    r, g, b = _channels(t)
    y = _luma(r, g, b)
    red, blue = (r - y) * red_gain + 0.5, (b - y) * blue_gain + 0.5
    return _stack(y, red, blue) if red_first else _stack(y, blue, red)


def _from_luma_differences(
    t: torch.Tensor, red_gain: float, green_gains: tuple[float, float], blue_gain: float, red_first: bool
) -> torch.Tensor:
    """Inverse of _to_luma_differences with OpenCV's rounded coefficients; green_gains follow the stored plane order."""
    y, first, second = _channels(t)
    first, second = first - 0.5, second - 0.5
    red, blue = (first, second) if red_first else (second, first)
    green = y - green_gains[0] * first - green_gains[1] * second
    return _stack(y + red_gain * red, green, y + blue_gain * blue).clamp(0.0, 1.0)


def rgb_to_ycrcb(t: torch.Tensor) -> torch.Tensor:
    """RGB [0,1] -> Y, Cr, Cb (OpenCV: Cr = (R-Y)*0.713 + 0.5, Cb = (B-Y)*0.564 + 0.5)."""
    return _to_luma_differences(t, red_gain=0.713, blue_gain=0.564, red_first=True)


def ycrcb_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """Y, Cr, Cb -> RGB [0,1] (clipped): R = Y + 1.403 Cr, G = Y - 0.714 Cr - 0.344 Cb, B = Y + 1.773 Cb."""
    return _from_luma_differences(t, red_gain=1.403, green_gains=(0.714, 0.344), blue_gain=1.773, red_first=True)


def rgb_to_yuv(t: torch.Tensor) -> torch.Tensor:
    """RGB [0,1] -> Y, U, V (OpenCV: U = (B-Y)*0.492 + 0.5, V = (R-Y)*0.877 + 0.5)."""
    return _to_luma_differences(t, red_gain=0.877, blue_gain=0.492, red_first=False)


def yuv_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """Y, U, V -> RGB [0,1] (clipped): R = Y + 1.140 V, G = Y - 0.395 U - 0.581 V, B = Y + 2.032 U."""
    return _from_luma_differences(t, red_gain=1.140, green_gains=(0.395, 0.581), blue_gain=2.032, red_first=False)


def rgb_to_gray(t: torch.Tensor) -> torch.Tensor:
    """RGB [0,1] -> (..., 1, H, W) BT.601 luma (OpenCV's RGB2GRAY)."""
    r, g, b = _channels(t)
    return _luma(r, g, b).unsqueeze(-3)


def gray_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """(..., 1, H, W) grey -> three equal channels."""
    return t[..., :1, :, :].expand(*t.shape[:-3], 3, *t.shape[-2:]).clone()


_TENSOR_TO: Final = {"hsv": rgb_to_hsv, "hls": rgb_to_hls, "lab": rgb_to_lab, "ycrcb": rgb_to_ycrcb, "yuv": rgb_to_yuv, "gray": rgb_to_gray}
_TENSOR_FROM: Final = {"hsv": hsv_to_rgb, "hls": hls_to_rgb, "lab": lab_to_rgb, "ycrcb": ycrcb_to_rgb, "yuv": yuv_to_rgb, "gray": gray_to_rgb}
