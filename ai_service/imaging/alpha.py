"""Transparency: detect it, split and re-attach it, flatten it onto a color, make it from a color key."""

from __future__ import annotations

from typing import Final, Literal

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageColor

#: A color as "#rrggbb", a CSS name, an (r, g, b) tuple or a single gray level.
ColorLike = str | int | tuple[int, int, int] | tuple[int, int, int, int] | list[int]
#: Pillow modes with an alpha band (P and L/RGB images may carry transparency in `info` instead).
ALPHA_MODES: Final = ("LA", "RGBA", "PA", "La", "RGBa")
WHITE: Final = (255, 255, 255)


def parse_color(color: ColorLike) -> tuple[int, int, int]:
    """Normalize a color argument to an (r, g, b) tuple of 0..255 ints (ValueError when invalid)."""
    if isinstance(color, str):
        rgb = ImageColor.getrgb(color.strip())
        return (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    if isinstance(color, (int, np.integer)) and not isinstance(color, bool):
        if not 0 <= int(color) <= 255:
            raise ValueError(f"gray level {color} is outside 0..255")
        return (int(color),) * 3
    values = [int(v) for v in color]  # type: ignore[union-attr]
    if len(values) not in (3, 4) or any(not 0 <= v <= 255 for v in values):
        raise ValueError(f"color {color!r} must be 3 or 4 values in 0..255")
    return (values[0], values[1], values[2])


def has_alpha(im: Image.Image | np.ndarray) -> bool:
    """Whether the image carries transparency information at all (alpha band, or palette/color-key tRNS)."""
    if isinstance(im, np.ndarray):
        return im.ndim == 3 and im.shape[2] in (2, 4)
    return im.mode in ALPHA_MODES or "transparency" in im.info


def is_transparent(im: Image.Image | np.ndarray) -> bool:
    """Whether any pixel is actually see-through (alpha < max), palette and color-key transparency included."""
    if isinstance(im, np.ndarray):
        if not has_alpha(im):
            return False
        top = 255 if im.dtype == np.uint8 else (1.0 if np.issubdtype(im.dtype, np.floating) else np.iinfo(im.dtype).max)
        return bool((im[..., -1] < top).any())
    if not has_alpha(im):
        return False
    if im.mode in ("P", "PA", "L", "RGB", "1"):
        im = im.convert("RGBA" if im.mode != "L" else "LA")
    lo, _ = im.getextrema()[-1]
    return lo < 255


def split_alpha(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Color (L or RGB) and alpha (L, or None when the image has no transparency) as separate images."""
    from ai_service.imaging.io import normalize_mode

    im = normalize_mode(im)
    if im.mode == "RGBA":
        return im.convert("RGB"), im.getchannel("A")
    if im.mode == "LA":
        return im.getchannel("L"), im.getchannel("A")
    return im, None


def premultiply(arr: np.ndarray) -> np.ndarray:
    """HWC uint8/float with alpha last -> float32 [0,1] with color multiplied by alpha (for halo-free filtering)."""
    f = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
    f[..., :-1] *= f[..., -1:]
    return f


def unpremultiply(arr: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """Inverse of premultiply: divide color by alpha where alpha > 0, returning uint8 (rounded) or float."""
    out = arr.astype(np.float32, copy=True)
    alpha = out[..., -1:]
    np.divide(out[..., :-1], alpha, out=out[..., :-1], where=alpha > 1e-6)
    out[..., :-1] *= alpha > 1e-6
    np.clip(out, 0.0, 1.0, out=out)
    if dtype == np.uint8:
        return np.rint(out * 255.0).astype(np.uint8)
    return out.astype(dtype)


def composite_over(color: np.ndarray, alpha: np.ndarray, background: tuple[int, ...]) -> np.ndarray:
    """uint8 color (HWC) over a solid background with uint8 alpha (HW): round(c*a/255 + bg*(255-a)/255)."""
    a = alpha.astype(np.uint16)[..., None]
    bg = np.asarray(background, np.uint16)
    mixed = color.astype(np.uint16) * a + bg * (255 - a)
    return ((mixed + 127) // 255).astype(np.uint8)


def flatten_alpha(im: Image.Image, background: ColorLike = WHITE) -> Image.Image:
    """Composite transparent pixels onto a solid color (default white) for models that need opaque RGB/L."""
    from ai_service.imaging.io import normalize_mode

    im = normalize_mode(im)
    if im.mode in ("RGB", "L"):
        return im
    from ai_service.imaging.pixels import pixel_view

    bg = parse_color(background)
    arr = pixel_view(im)
    if im.mode == "LA" and bg[0] == bg[1] == bg[2]:
        return Image.fromarray(composite_over(arr[..., :1], arr[..., 1], bg[:1])[..., 0], "L")
    color = np.repeat(arr[..., :1], 3, axis=2) if im.mode == "LA" else arr[..., :3]
    return Image.fromarray(composite_over(color, arr[..., -1], bg), "RGB")


def reattach_alpha(output: Image.Image, original: Image.Image) -> Image.Image:
    """Give an image-to-image model's output the input's alpha (resized to fit), so transparent stays transparent."""
    _, alpha = split_alpha(original)
    if alpha is None:
        return output
    if alpha.size != output.size:
        alpha = alpha.resize(output.size, Image.Resampling.LANCZOS)
    color, _ = split_alpha(output)
    if color.mode == "L":
        return Image.merge("LA", (color, alpha))
    return Image.merge("RGBA", (*color.convert("RGB").split(), alpha))


def color_key_alpha(
    rgb: np.ndarray,
    key: tuple[int, int, int],
    tolerance: int = 0,
    softness: int = 0,
    metric: Literal["max", "euclidean"] = "max",
) -> np.ndarray:
    """Alpha (HW uint8) that is 0 within `tolerance` of the key color and ramps to 255 over `softness`."""
    if metric == "max":
        rgb = np.ascontiguousarray(rgb)
        h, w, c = rgb.shape
        scratch = np.empty((c + 2, h, w), np.uint8)  # one allocation: big enough for huge pages, no per-plane faults
        return _max_key_alpha(rgb, key, _ramp_lut(tolerance, softness, 255), scratch)[0]
    if metric == "euclidean":
        d = rgb[..., :3].astype(np.float32) - np.asarray(key, np.float32)
        dist = np.sqrt(np.einsum("...c,...c->...", d, d))
        return _ramp(dist, tolerance, softness)
    raise ValueError(f"unknown color-distance metric {metric!r}")


def _max_key_alpha(
    pixels: np.ndarray, key: tuple[int, int, int], lut: np.ndarray, scratch: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Key alpha via OpenCV into preallocated planes (its own allocator is slow): returns (alpha, split planes)."""
    planes = list(scratch[: pixels.shape[2]])
    dist, tmp = scratch[-2], scratch[-1]
    cv2.split(pixels, planes)
    cv2.absdiff(planes[0], key[0], dist)
    for plane, k in zip(planes[1:3], key[1:3]):
        cv2.absdiff(plane, k, tmp)
        cv2.max(dist, tmp, dist)
    cv2.LUT(dist, lut, tmp)
    return tmp, planes


def _ramp_lut(tolerance: int, softness: int, top: int) -> np.ndarray:
    """256-entry table: distance -> alpha (0 up to tolerance, linear to 255 over softness)."""
    return _ramp(np.arange(top + 1, dtype=np.float32), tolerance, softness).reshape(1, -1)


def _ramp(dist: np.ndarray, tolerance: float, softness: float) -> np.ndarray:
    """Distance -> uint8 alpha: 0 while dist <= tolerance, then linear up to 255 at tolerance + softness."""
    if softness <= 0:
        return np.where(dist <= tolerance, 0, 255).astype(np.uint8)
    return np.clip(np.rint((dist - tolerance) * (255.0 / softness)), 0, 255).astype(np.uint8)


def color_key(
    im: Image.Image,
    key: ColorLike = WHITE,
    tolerance: int = 0,
    softness: int = 0,
    metric: Literal["max", "euclidean"] = "max",
) -> Image.Image:
    """Make pixels near `key` transparent (hard within tolerance, soft edge beyond); existing alpha is kept."""
    from ai_service.imaging.io import normalize_mode

    if tolerance < 0 or softness < 0:
        raise ValueError("tolerance and softness must be >= 0")
    from ai_service.imaging.pixels import pixel_view4

    im = normalize_mode(im)
    rgba = im if im.mode in ("RGB", "RGBA") else im.convert("RGBA")
    rgb_key = parse_color(key)
    four = pixel_view4(rgba)  # zero-copy RGBA (or RGBX for RGB: X = 255 leaves the key alpha as is)
    if four is not None:
        return Image.fromarray(color_key_array(four, rgb_key, tolerance, softness, metric), "RGBA")
    if metric == "max":  # huge multi-block images: stay inside Pillow rather than copying out
        return _color_key_pil(rgba.convert("RGBA"), rgb_key, tolerance, softness)
    return Image.fromarray(color_key_array(np.asarray(rgba), rgb_key, tolerance, softness, metric), "RGBA")


def color_key_array(
    arr: np.ndarray,
    key: ColorLike = WHITE,
    tolerance: int = 0,
    softness: int = 0,
    metric: Literal["max", "euclidean"] = "max",
) -> np.ndarray:
    """color_key for HWC uint8 RGB/RGBA arrays (returns a new RGBA array), all in OpenCV/NumPy."""
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 or HxWx4 uint8 array, got {arr.dtype} {arr.shape}")
    if tolerance < 0 or softness < 0:
        raise ValueError("tolerance and softness must be >= 0")
    arr = np.ascontiguousarray(arr)
    h, w, c = arr.shape
    rgb_key = parse_color(key)
    scratch = np.empty((c + 2, h, w), np.uint8)  # one allocation: big enough for huge pages, no per-plane faults
    if metric == "max":
        alpha, planes = _max_key_alpha(arr, rgb_key, _ramp_lut(tolerance, softness, 255), scratch)
    else:
        planes = list(scratch[:c])
        cv2.split(arr, planes)
        alpha = color_key_alpha(arr, rgb_key, tolerance, softness, metric)
    if c == 3:
        planes.append(alpha)
    else:
        cv2.min(planes[3], alpha, planes[3])
    out = np.empty((h, w, 4), np.uint8)
    cv2.merge(planes, out)
    return out


def _color_key_pil(rgba: Image.Image, key: tuple[int, int, int], tolerance: int, softness: int) -> Image.Image:
    """Max-metric key in Pillow's C loops (no NumPy round trip): alpha = min(A, max_c ramp(|c - key_c|)).

    ramp is monotonic, so ramp(max distance) == max of per-channel ramps: three 256-entry LUTs do it all.
    """
    levels = np.arange(256, dtype=np.float32)
    r, g, b, a = rgba.split()
    keyed = [band.point(_ramp(np.abs(levels - k), tolerance, softness).tolist()) for band, k in zip((r, g, b), key)]
    key_alpha = ImageChops.lighter(ImageChops.lighter(keyed[0], keyed[1]), keyed[2])
    return Image.merge("RGBA", (r, g, b, ImageChops.darker(a, key_alpha)))
