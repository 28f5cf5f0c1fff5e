"""Resizing PIL images and (batched) tensors with Pillow-compatible filters, alpha-aware, plus fit modes."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable, Final, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ai_service.imaging.alpha import ColorLike, parse_color, premultiply, unpremultiply
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
    filter: Filter = "bilinear",
    *,
    box: tuple[float, float, float, float] | None = None,
    premultiplied: bool = True,
) -> Image.Image:
    """Resize to (width, height) with Pillow (antialiased on downscale); alpha images filter premultiplied in float."""
    size = check_size(size)
    resample = PIL_FILTERS[check_filter(filter)]
    im = normalize_mode(im)
    if im.mode in ("RGBA", "LA") and filter != "nearest" and premultiplied:
        return _resize_premultiplied(im, size, resample, box)
    return im.resize(size, resample, box=box)


def _resize_premultiplied(
    im: Image.Image, size: tuple[int, int], resample: Image.Resampling, box: tuple[float, float, float, float] | None
) -> Image.Image:
    """Premultiply in float32, resize each band as a Pillow 'F' image, un-premultiply: no dark/bright halos."""
    pre = premultiply(pixel_view(im))
    bands = [np.asarray(Image.fromarray(pre[..., c], "F").resize(size, resample, box=box)) for c in range(pre.shape[2])]
    out = unpremultiply(np.stack(bands, axis=-1))
    return Image.fromarray(out, im.mode)


# ---------------------------------------------------------------- Pillow's filter kernels (for tensors)


def _box(x: np.ndarray) -> np.ndarray:
    """Pillow's box filter: 1 on (-0.5, 0.5]."""
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
    """Pillow's bilinear (triangle) filter."""
    return np.clip(1.0 - np.abs(x), 0.0, None)


def _bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Pillow's bicubic filter (Keys, a = -0.5)."""
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _lanczos(x: np.ndarray) -> np.ndarray:
    """Pillow's Lanczos-3 filter (truncated sinc)."""
    return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3.0), 0.0)


#: name -> (kernel, support) exactly as Pillow's Resample.c defines them.
KERNELS: Final[dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]]] = {
    "area": (_box, 0.5),
    "bilinear": (_triangle, 1.0),
    "bicubic": (_bicubic, 2.0),
    "lanczos": (_lanczos, 3.0),
}


@lru_cache(maxsize=128)
def resample_matrix(in_size: int, out_size: int, filter: str, antialias: bool = True, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Dense (out, in) weight matrix reproducing Pillow's precompute_coeffs for one axis (optionally over a box)."""
    kernel, support = KERNELS[filter]
    end = float(in_size) if end is None else end
    scale = (end - start) / out_size
    filterscale = max(scale, 1.0) if antialias else 1.0
    support *= filterscale
    centers = start + (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(centers - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(centers + support + 0.5), in_size).astype(np.int64)
    cols = np.arange(in_size)
    inside = (cols[None, :] >= xmin[:, None]) & (cols[None, :] < xmax[:, None])
    w = kernel((cols[None, :] - centers[:, None] + 0.5) / filterscale) * inside
    total = w.sum(axis=1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total != 0)


# ---------------------------------------------------------------- tensors


@lru_cache(maxsize=128)
def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index per output pixel exactly as Pillow's ImagingScaleAffine computes it (accumulated doubles)."""
    step = in_size / out_size
    pos = step * 0.5
    out = np.empty(out_size, np.int64)
    for i in range(out_size):
        out[i] = min(max(math.floor(pos), 0), in_size - 1)
        pos += step
    return out


def resize_tensor(
    t: torch.Tensor,
    size: tuple[int, int],
    filter: Filter = "bilinear",
    *,
    antialias: bool = True,
    alpha: bool | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Resize CHW/NCHW (float or uint8, any device) to (width, height); within 1-2 LSB of Pillow's same filter.

    Separable like Pillow (width pass, then height), clamping to `clamp` after each pass as Pillow clips to
    8 bits; pass clamp=None for normalised (mean/std) tensors. uint8 in -> uint8 out, rounded like Pillow.
    `alpha=None` treats a 2- or 4-channel input's last channel as alpha and filters premultiplied.
    """
    w, h = check_size(size)
    check_filter(filter)
    squeeze = t.ndim == 3
    x = t.unsqueeze(0) if squeeze else t
    if x.ndim != 4:
        raise ValueError(f"expected CHW or NCHW, got shape {tuple(t.shape)}")
    if filter == "nearest":
        out = _nearest(x, (h, w))
        return out[0] if squeeze else out
    is_uint8 = x.dtype == torch.uint8
    if not (is_uint8 or x.is_floating_point()):
        raise TypeError(f"expected a float or uint8 tensor, got {t.dtype}")
    xf = x.float() / 255.0 if is_uint8 else x
    bounds = (0.0, 1.0) if is_uint8 else clamp
    use_alpha = (x.shape[1] in (2, 4)) if alpha is None else alpha
    if use_alpha:
        xf = torch.cat([xf[:, :-1] * xf[:, -1:], xf[:, -1:]], dim=1)
    out = _separable(xf, (h, w), filter, antialias, bounds, quantize=is_uint8 and not use_alpha)
    if use_alpha:
        a = out[:, -1:].clamp(0.0, 1.0)
        colour = torch.where(a > 1e-6, out[:, :-1] / a.clamp_min(1e-6), torch.zeros_like(out[:, :-1]))
        out = torch.cat([colour.clamp(0.0, 1.0), a], dim=1)
    if is_uint8:
        out = out.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out[0] if squeeze else out


def _nearest(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest neighbour with Pillow's exact source indices (any dtype)."""
    h, w = hw
    ix = torch.from_numpy(nearest_indices(x.shape[-1], w)).to(x.device)
    iy = torch.from_numpy(nearest_indices(x.shape[-2], h)).to(x.device)
    return x.index_select(-1, ix).index_select(-2, iy)


def _separable(
    x: torch.Tensor, hw: tuple[int, int], filter: str, antialias: bool, bounds: tuple[float, float] | None, quantize: bool
) -> torch.Tensor:
    """Width pass then height pass (Pillow's order), clamping (and 8-bit rounding for uint8 input) in between."""
    h, w = hw
    in_h, in_w = x.shape[-2:]
    out = x
    if in_w != w:
        out = _limit(_pass(out, w, -1, filter, antialias), bounds, quantize)
    if in_h != h:
        out = _limit(_pass(out, h, -2, filter, antialias), bounds, quantize=False)
    return out


def _limit(x: torch.Tensor, bounds: tuple[float, float] | None, quantize: bool) -> torch.Tensor:
    """Clamp to bounds and optionally round to the 8-bit grid, as Pillow's 8-bit intermediate does."""
    if bounds is not None:
        x = x.clamp(*bounds)
    if quantize:
        x = x.mul(255.0).round_().div_(255.0)
    return x


def _pass(x: torch.Tensor, size: int, dim: int, filter: str, antialias: bool) -> torch.Tensor:
    """Resample one axis: torch's antialiased kernels for bilinear/bicubic (Pillow's), weight matmul otherwise."""
    if filter in ("bilinear", "bicubic") and antialias:
        target = (x.shape[-2], size) if dim == -1 else (size, x.shape[-1])
        return F.interpolate(x, size=target, mode=filter, antialias=True, align_corners=False)
    in_size = x.shape[dim]
    m = torch.from_numpy(resample_matrix(in_size, size, filter, antialias or filter == "area")).to(x.device, x.dtype)
    if dim == -1:
        return torch.matmul(x, m.T)
    return torch.matmul(m, x)


# ---------------------------------------------------------------- fit modes


@dataclass(frozen=True)
class FitGeometry:
    """How a source image was placed in the output: scale, padding and the source crop box (for mapping boxes back)."""

    mode: str
    src_size: tuple[int, int]
    dst_size: tuple[int, int]
    scale_x: float
    scale_y: float
    crop_box: tuple[float, float, float, float]
    content_box: tuple[int, int, int, int]

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) padding in output pixels (letterbox)."""
        l, t, r, b = self.content_box
        return l, t, self.dst_size[0] - r, self.dst_size[1] - b

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        """Output coordinates -> source coordinates (continuous, pixel edges at integers)."""
        return (
            self.crop_box[0] + (x - self.content_box[0]) / self.scale_x,
            self.crop_box[1] + (y - self.content_box[1]) / self.scale_y,
        )

    def to_dest(self, x: float, y: float) -> tuple[float, float]:
        """Source coordinates -> output coordinates."""
        return (
            self.content_box[0] + (x - self.crop_box[0]) * self.scale_x,
            self.content_box[1] + (y - self.crop_box[1]) * self.scale_y,
        )

    def box_to_source(self, box: tuple[float, float, float, float], clip: bool = True) -> tuple[float, float, float, float]:
        """An (x0, y0, x1, y1) box on the output (e.g. a detection) -> the same box on the source image."""
        x0, y0 = self.to_source(box[0], box[1])
        x1, y1 = self.to_source(box[2], box[3])
        if clip:
            sw, sh = self.src_size
            x0, x1 = min(max(x0, 0.0), sw), min(max(x1, 0.0), sw)
            y0, y1 = min(max(y0, 0.0), sh), min(max(y1, 0.0), sh)
        return x0, y0, x1, y1

    def for_source(self, size: tuple[int, int]) -> FitGeometry:
        """The same placement described against a larger (or smaller) version of the source, e.g. the
        full-resolution original of an image that was decoded at reduced scale."""
        fx, fy = size[0] / self.src_size[0], size[1] / self.src_size[1]
        x0, y0, x1, y1 = self.crop_box
        return FitGeometry(self.mode, (int(size[0]), int(size[1])), self.dst_size, self.scale_x / fx, self.scale_y / fy,
                           (x0 * fx, y0 * fy, x1 * fx, y1 * fy), self.content_box)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (padding included)."""
        return {**asdict(self), "padding": self.padding}


def plan_fit(src_size: tuple[int, int], dst_size: tuple[int, int], mode: FitMode = "stretch") -> FitGeometry:
    """Geometry for fitting src into dst: exact stretch, letterbox (keep aspect, pad) or centre crop (keep aspect)."""
    sw, sh = check_size(src_size)
    dw, dh = check_size(dst_size)
    if mode == "stretch":
        return FitGeometry(mode, (sw, sh), (dw, dh), dw / sw, dh / sh, (0.0, 0.0, float(sw), float(sh)), (0, 0, dw, dh))
    if mode == "letterbox":
        scale = min(dw / sw, dh / sh)
        nw, nh = max(1, min(dw, round(sw * scale))), max(1, min(dh, round(sh * scale)))
        left, top = (dw - nw) // 2, (dh - nh) // 2
        return FitGeometry(mode, (sw, sh), (dw, dh), nw / sw, nh / sh, (0.0, 0.0, float(sw), float(sh)), (left, top, left + nw, top + nh))
    if mode == "crop":
        scale = max(dw / sw, dh / sh)
        cw, ch = dw / scale, dh / scale
        x0, y0 = (sw - cw) / 2.0, (sh - ch) / 2.0
        return FitGeometry(mode, (sw, sh), (dw, dh), dw / cw, dh / ch, (x0, y0, x0 + cw, y0 + ch), (0, 0, dw, dh))
    raise ValueError(f"unknown fit mode {mode!r}; choose one of {', '.join(FIT_MODES)}")


def fit_image(
    im: Image.Image,
    size: tuple[int, int],
    mode: FitMode = "stretch",
    filter: Filter = "bilinear",
    pad_color: ColorLike | None = (0, 0, 0),
) -> tuple[Image.Image, FitGeometry]:
    """Resize into (width, height) by stretch, letterbox (pad colour, or None for transparent) or centre crop."""
    im = normalize_mode(im)
    geo = plan_fit(im.size, size, mode)
    if mode == "crop":
        return resize_image(im, geo.dst_size, filter, box=geo.crop_box), geo
    l, t, r, b = geo.content_box
    content = resize_image(im, (r - l, b - t), filter)
    if mode == "stretch":
        return content, geo
    canvas = _canvas(content.mode, geo.dst_size, pad_color)
    if canvas.mode != content.mode:
        content = content.convert(canvas.mode)
    canvas.paste(content, (l, t))
    return canvas, geo


def _canvas(mode: str, size: tuple[int, int], pad_color: ColorLike | None) -> Image.Image:
    """Padding canvas: transparent when pad_color is None, else opaque pad colour (mode widened as needed)."""
    if pad_color is None:
        return Image.new("LA" if mode in ("L", "LA") else "RGBA", size, (0, 0) if mode in ("L", "LA") else (0, 0, 0, 0))
    r, g, b = parse_color(pad_color)
    if mode in ("L", "LA") and r == g == b:
        return Image.new(mode, size, (r, 255) if mode == "LA" else r)
    out_mode = "RGBA" if mode in ("RGBA", "LA") else "RGB"
    return Image.new(out_mode, size, (r, g, b, 255) if out_mode == "RGBA" else (r, g, b))


def fit_tensor(
    t: torch.Tensor,
    size: tuple[int, int],
    mode: FitMode = "stretch",
    filter: Filter = "bilinear",
    pad_value: float | tuple[float, ...] = 0.0,
    **resize_kwargs: Any,
) -> tuple[torch.Tensor, FitGeometry]:
    """fit_image for CHW/NCHW tensors; letterbox pads with pad_value (per channel allowed), crop is on whole pixels."""
    in_h, in_w = t.shape[-2:]
    geo = plan_fit((in_w, in_h), size, mode)
    if mode == "crop":
        x0, y0, x1, y1 = geo.crop_box
        iw, ih = min(in_w, max(1, round(x1 - x0))), min(in_h, max(1, round(y1 - y0)))
        ix0, iy0 = min(int(math.floor(x0 + 0.5)), in_w - iw), min(int(math.floor(y0 + 0.5)), in_h - ih)
        cropped = t[..., iy0 : iy0 + ih, ix0 : ix0 + iw]
        geo = FitGeometry(mode, geo.src_size, geo.dst_size, geo.dst_size[0] / iw, geo.dst_size[1] / ih,
                          (float(ix0), float(iy0), float(ix0 + iw), float(iy0 + ih)), geo.content_box)
        return resize_tensor(cropped, geo.dst_size, filter, **resize_kwargs), geo
    l, tp, r, b = geo.content_box
    content = resize_tensor(t, (r - l, b - tp), filter, **resize_kwargs)
    if mode == "stretch":
        return content, geo
    shape = (*content.shape[:-2], geo.dst_size[1], geo.dst_size[0])
    values = torch.as_tensor(pad_value, dtype=content.dtype if content.is_floating_point() else torch.float32, device=content.device)
    canvas = torch.empty(shape, dtype=content.dtype, device=content.device)
    canvas.copy_(values.reshape(-1, 1, 1).expand(shape) if values.ndim else values.expand(shape))
    canvas[..., tp:b, l:r] = content
    return canvas, geo
