"""Resizing PIL images with Pillow's filters, alpha-aware (premultiplied), plus fit modes."""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
from PIL import Image

from ai_service.imaging.alpha import ColorLike, parse_color, premultiply, unpremultiply
from ai_service.imaging.geometry import Geometry
from ai_service.imaging.io import normalize_mode
from ai_service.imaging.pixels import pixel_view

Filter = Literal["nearest", "bilinear", "bicubic", "lanczos", "area"]
FitMode = Literal["stretch", "letterbox", "crop"]
FILTERS: Final = ("nearest", "bilinear", "bicubic", "lanczos", "area")
FIT_MODES: Final = ("stretch", "letterbox", "crop")
PIL_FILTERS: Final = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def check_filter(name: str) -> Filter:
    """Validate a filter name (ValueError listing the choices)."""
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}")
    return name  # type: ignore[return-value]


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """Validate a (width, height) target of positive ints."""
    w, h = (int(size[0]), int(size[1]))
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return w, h


# ---------------------------------------------------------------- PIL images


def resize_image(
    im: Image.Image,
    size: tuple[int, int],
    resample: Filter = "bilinear",
    *,
    box: tuple[float, float, float, float] | None = None,
    premultiplied: bool = True,
) -> Image.Image:
    """Resize to (width, height) with Pillow (antialiased on downscale); alpha images filter premultiplied in float."""
    size = check_size(size)
    pil_resample = PIL_FILTERS[check_filter(resample)]
    im = normalize_mode(im)
    if im.mode in ("RGBA", "LA") and resample != "nearest" and premultiplied:
        return _resize_premultiplied(im, size, pil_resample, box)
    return im.resize(size, pil_resample, box=box)


def _resize_premultiplied(
    im: Image.Image, size: tuple[int, int], resample: Image.Resampling, box: tuple[float, float, float, float] | None
) -> Image.Image:
    """Premultiply in float32, resize each band as a Pillow 'F' image, un-premultiply: no dark/bright halos."""
    pre = premultiply(pixel_view(im))
    bands = [np.asarray(Image.fromarray(pre[..., c], "F").resize(size, resample, box=box)) for c in range(pre.shape[2])]
    out = unpremultiply(np.stack(bands, axis=-1))
    return Image.fromarray(out, im.mode)


# ---------------------------------------------------------------- fit modes


def plan_fit(
    src_size: tuple[int, int], dst_size: tuple[int, int], mode: FitMode = "stretch", resample: str | None = None
) -> Geometry:
    """Geometry for fitting src into dst: exact stretch, letterbox (keep aspect, pad) or center crop (keep aspect)."""
    sw, sh = check_size(src_size)
    dw, dh = check_size(dst_size)
    whole = (0.0, 0.0, float(sw), float(sh))
    if mode == "stretch":
        return Geometry(mode, (sw, sh), (dw, dh), (dw / sw, dh / sh), whole, (0, 0, dw, dh), resample)
    if mode == "letterbox":
        scale = min(dw / sw, dh / sh)
        nw, nh = max(1, min(dw, round(sw * scale))), max(1, min(dh, round(sh * scale)))
        left, top = (dw - nw) // 2, (dh - nh) // 2
        return Geometry(mode, (sw, sh), (dw, dh), (nw / sw, nh / sh), whole, (left, top, left + nw, top + nh), resample)
    if mode == "crop":
        scale = max(dw / sw, dh / sh)
        cw, ch = dw / scale, dh / scale
        x0, y0 = (sw - cw) / 2.0, (sh - ch) / 2.0
        return Geometry(
            mode, (sw, sh), (dw, dh), (dw / cw, dh / ch), (x0, y0, x0 + cw, y0 + ch), (0, 0, dw, dh), resample
        )
    raise ValueError(f"unknown fit mode {mode!r}; choose one of {', '.join(FIT_MODES)}")


def fit_image(
    im: Image.Image,
    size: tuple[int, int],
    mode: FitMode = "stretch",
    resample: Filter = "bilinear",
    pad_color: ColorLike | None = (0, 0, 0),
) -> tuple[Image.Image, Geometry]:
    """Resize into (width, height) by stretch, letterbox (pad color, or None for transparent) or center crop."""
    im = normalize_mode(im)
    geo = plan_fit(im.size, size, mode, resample)
    if mode == "crop":
        return resize_image(im, geo.input_size, resample, box=geo.crop), geo
    left, top, right, bottom = geo.content
    content = resize_image(im, (right - left, bottom - top), resample)
    if mode == "stretch":
        return content, geo
    canvas = _canvas(content.mode, geo.input_size, pad_color)
    if canvas.mode != content.mode:
        content = content.convert(canvas.mode)
    canvas.paste(content, (left, top))
    return canvas, geo


def _canvas(mode: str, size: tuple[int, int], pad_color: ColorLike | None) -> Image.Image:
    """Padding canvas: transparent when pad_color is None, else opaque pad color (mode widened as needed)."""
    if pad_color is None:
        return Image.new("LA" if mode in ("L", "LA") else "RGBA", size, (0, 0) if mode in ("L", "LA") else (0, 0, 0, 0))
    r, g, b = parse_color(pad_color)
    if mode in ("L", "LA") and r == g == b:
        return Image.new(mode, size, (r, 255) if mode == "LA" else r)
    out_mode = "RGBA" if mode in ("RGBA", "LA") else "RGB"
    return Image.new(out_mode, size, (r, g, b, 255) if out_mode == "RGBA" else (r, g, b))
