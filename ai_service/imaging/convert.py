"""Conversions between PIL, NumPy (HWC RGB/RGBA), OpenCV (BGR/BGRA) and torch (CHW/NCHW), plus grey and JSON."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from pathlib import PurePath
from typing import Any, Final, Literal, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ai_service.imaging.io import normalize_mode
from ai_service.imaging.pixels import pixel_array, pixel_view, pixel_view4

MODE_BY_CHANNELS: Final = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
CHANNELS_BY_MODE: Final = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
#: Luma weights (R, G, B).  BT.601 is what OpenCV's RGB2GRAY and Pillow's convert("L") use.
GRAY_WEIGHTS: Final = {"bt601": (0.299, 0.587, 0.114), "bt709": (0.2126, 0.7152, 0.0722)}
#: The same weights in OpenCV's 14-bit fixed point (they sum to 16384), so uint8 results match cv2 exactly.
_GRAY_FIXED: Final = {"bt601": (4899, 9617, 1868), "bt709": (3483, 11718, 1183)}
GrayWeights = Literal["bt601", "bt709"]


# ---------------------------------------------------------------- PIL <-> NumPy


def pil_to_numpy(im: Image.Image) -> np.ndarray:
    """HWC uint8 array (C = 1, 2, 3 or 4 for L, LA, RGB, RGBA), other modes normalised first."""
    arr = pixel_array(normalize_mode(im))
    return arr[..., None] if arr.ndim == 2 else arr


def _pil_hwc_view(im: Image.Image) -> np.ndarray:
    """Read-only HWC view (possibly strided, possibly aliasing im) for conversions that copy right away."""
    arr = pixel_view(normalize_mode(im))
    return arr[..., None] if arr.ndim == 2 else arr


def numpy_to_pil(arr: np.ndarray) -> Image.Image:
    """HW or HWC (C = 1..4) uint8, bool or float-in-[0,1] array -> L/LA/RGB/RGBA image."""
    arr = to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    if arr.ndim != 3 or arr.shape[2] not in MODE_BY_CHANNELS:
        raise ValueError(f"expected HW or HWC with 1-4 channels, got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), MODE_BY_CHANNELS[arr.shape[2]])


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 unchanged; bool -> 0/255; float assumed in [0,1] -> round(x*255) clipped; other ints clipped."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- NumPy <-> OpenCV


def numpy_to_cv2(arr: np.ndarray) -> np.ndarray:
    """RGB -> BGR and RGBA -> BGRA (grey unchanged, squeezed to HW) in OpenCV's layout, any dtype."""
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 2:
        raise ValueError("OpenCV has no grey+alpha layout; convert LA to RGBA first")
    return arr


def cv2_to_numpy(arr: np.ndarray) -> np.ndarray:
    """BGR -> RGB and BGRA -> RGBA; grey HW -> HW1 (the layout pil_to_numpy uses)."""
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr[..., None] if arr.ndim == 2 else arr


def pil_to_cv2(im: Image.Image) -> np.ndarray:
    """PIL image -> OpenCV array (HW grey, BGR or BGRA uint8); LA becomes BGRA."""
    im = normalize_mode(im)
    if im.mode == "LA":
        im = im.convert("RGBA")
    four = pixel_view4(im)
    if four is not None:  # Pillow keeps RGB as RGBX: one cvtColor straight from its buffer
        return cv2.cvtColor(four, cv2.COLOR_RGBA2BGR if im.mode == "RGB" else cv2.COLOR_RGBA2BGRA)
    return numpy_to_cv2(np.asarray(im))


def cv2_to_pil(arr: np.ndarray) -> Image.Image:
    """OpenCV array (HW grey, BGR, BGRA; uint8 or float in [0,1]) -> PIL image."""
    return numpy_to_pil(cv2_to_numpy(to_uint8(arr)))


# ---------------------------------------------------------------- torch


def numpy_to_tensor(
    arr: np.ndarray,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    batch: bool = False,
) -> torch.Tensor:
    """HWC (or HW) array -> CHW (or 1CHW) on `device`.

    uint8 input: float dtypes are scaled to [0,1], uint8 is kept exact. Float input is taken to be in [0,1]
    already and keeps its values (cast to `dtype`; uint8 output is round(x*255) clipped).
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected HW or HWC, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        t = _from_numpy(arr).to(device, non_blocking=True).permute(2, 0, 1)
        if dtype == torch.uint8:
            t = t.mul(255.0).round_().clamp_(0, 255).to(torch.uint8, memory_format=torch.contiguous_format)
        else:
            t = t.to(dtype, memory_format=torch.contiguous_format)
        return t.unsqueeze(0) if batch else t
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 or float image array, got {arr.dtype}")
    return _finish_tensor(_from_numpy(arr).to(device, non_blocking=True).permute(2, 0, 1), dtype, batch)


def _finish_tensor(chw: torch.Tensor, dtype: torch.dtype, batch: bool) -> torch.Tensor:
    """A uint8 CHW view -> a fresh contiguous uint8 copy, or float scaled to [0,1]; optional batch axis."""
    if dtype == torch.uint8:
        t = chw.clone(memory_format=torch.contiguous_format)
    elif dtype.is_floating_point:
        t = chw.to(dtype, memory_format=torch.contiguous_format).div_(255.0)
    else:
        raise TypeError(f"unsupported tensor dtype {dtype}; use a float dtype or torch.uint8")
    return t.unsqueeze(0) if batch else t


def _from_numpy(arr: np.ndarray) -> torch.Tensor:
    """torch.from_numpy, copying read-only arrays (PIL's) first so the tensor never aliases immutable memory."""
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C", copy=True)
    return torch.from_numpy(arr)


def pil_to_tensor(
    im: Image.Image,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    batch: bool = False,
) -> torch.Tensor:
    """PIL image -> CHW/1CHW tensor (C = 1..4, alpha kept) as float [0,1] or uint8 on `device`."""
    im = normalize_mode(im)
    four = pixel_view4(im)
    if four is None:
        return numpy_to_tensor(_pil_hwc_view(im), dtype=dtype, device=device, batch=batch)
    # Pillow holds RGB as RGBX: copy its buffer once (contiguous memcpy), drop X while converting
    chw = torch.from_numpy(np.array(four)).to(device, non_blocking=True).permute(2, 0, 1)
    return _finish_tensor(chw[:3] if im.mode == "RGB" else chw, dtype, batch)


def pils_to_batch(
    images: Sequence[Image.Image],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Same-size, same-mode images -> one NCHW tensor."""
    if not images:
        raise ValueError("need at least one image")
    arrays = [_pil_hwc_view(im) for im in images]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"images differ in size or channels: {sorted({a.shape for a in arrays})}")
    t = _from_numpy(np.stack(arrays)).to(device, non_blocking=True).permute(0, 3, 1, 2)
    if dtype == torch.uint8:
        return t.contiguous()
    return t.to(dtype, memory_format=torch.contiguous_format).div_(255.0)


def tensor_to_numpy(t: torch.Tensor, dtype: type = np.uint8) -> np.ndarray:
    """CHW or 1CHW tensor (float in [0,1] or uint8, any device) -> HWC array.

    dtype=np.uint8 (default): floats are rounded and clipped to 0-255. A float dtype keeps float values
    as they are (uint8 tensors become x/255), so float -> float round trips are exact.
    """
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]}; index it first")
        t = t[0]
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] not in MODE_BY_CHANNELS:
        raise ValueError(f"expected CHW with 1-4 channels, got shape {tuple(t.shape)}")
    t = t.detach()
    if np.issubdtype(dtype, np.floating):
        t = t.float().div(255.0) if t.dtype == torch.uint8 else t
        return t.permute(1, 2, 0).contiguous().cpu().numpy().astype(dtype, copy=False)
    if t.dtype != torch.uint8:
        t = t.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return t.permute(1, 2, 0).contiguous().cpu().numpy()


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """CHW or 1CHW tensor (float in [0,1] or uint8) -> L/LA/RGB/RGBA image."""
    return numpy_to_pil(tensor_to_numpy(t))


def batch_to_pils(t: torch.Tensor) -> list[Image.Image]:
    """NCHW tensor -> list of PIL images."""
    return [tensor_to_pil(x) for x in t]


# ---------------------------------------------------------------- grey


def gray_from_rgb_array(rgb: np.ndarray, weights: GrayWeights = "bt601") -> np.ndarray:
    """HWC uint8 RGB(A) -> HW uint8 luma with OpenCV's 14-bit fixed-point rounding (BT.601 or BT.709)."""
    if weights not in _GRAY_FIXED:
        raise ValueError(f"unknown grey weights {weights!r}; use 'bt601' or 'bt709'")
    if weights == "bt601" and rgb.dtype == np.uint8:
        code = cv2.COLOR_RGBA2GRAY if rgb.shape[2] == 4 else cv2.COLOR_RGB2GRAY
        return cv2.cvtColor(np.ascontiguousarray(rgb), code)
    if rgb.dtype != np.uint8:
        w = np.asarray(GRAY_WEIGHTS[weights], np.float32)
        return rgb[..., :3].astype(np.float32) @ w
    wr, wg, wb = _GRAY_FIXED[weights]
    acc = rgb[..., 0].astype(np.int32) * wr + rgb[..., 1].astype(np.int32) * wg + rgb[..., 2].astype(np.int32) * wb
    return ((acc + 8192) >> 14).astype(np.uint8)


def to_gray(im: Image.Image, weights: GrayWeights = "bt601", keep_alpha: bool = True) -> Image.Image:
    """RGB/RGBA/L/LA image -> L (or LA when it had alpha and keep_alpha) with BT.601 or BT.709 weights."""
    im = normalize_mode(im)
    if im.mode in ("L", "LA"):
        return im if keep_alpha or im.mode == "L" else im.getchannel("L")
    four = pixel_view4(im)
    arr = four if four is not None else np.asarray(im)  # RGBX/RGBA: the 4th byte is ignored for luma
    gray = gray_from_rgb_array(arr, weights)
    if im.mode == "RGBA" and keep_alpha:
        return Image.merge("LA", (Image.fromarray(gray, "L"), im.getchannel("A")))
    return Image.fromarray(gray, "L")


def gray_to_rgba(im: Image.Image, alpha: int | Image.Image | None = None) -> Image.Image:
    """L/LA -> RGBA with equal channels; alpha from the LA band, a constant, or a separate L image."""
    im = normalize_mode(im)
    if im.mode in ("RGB", "RGBA"):
        raise ValueError(f"expected a grey image, got {im.mode}")
    g = im.getchannel("L")
    if isinstance(alpha, Image.Image):
        a = alpha.convert("L")
    elif alpha is not None:
        a = Image.new("L", im.size, int(alpha))
    elif im.mode == "LA":
        a = im.getchannel("A")
    else:
        a = Image.new("L", im.size, 255)
    return Image.merge("RGBA", (g, g, g, a))


def gray_tensor(t: torch.Tensor, weights: GrayWeights = "bt601") -> torch.Tensor:
    """(N)CHW RGB(A) float tensor -> (N)1HW luma on the same device (alpha ignored)."""
    w = torch.tensor(GRAY_WEIGHTS[weights], dtype=t.dtype if t.is_floating_point() else torch.float32, device=t.device)
    x = t if t.is_floating_point() else t.float()
    c = -3 if x.ndim == 3 else 1
    rgb = x.narrow(c, 0, 3)
    return torch.tensordot(rgb.movedim(c, -1), w, dims=1).unsqueeze(c)


# ---------------------------------------------------------------- JSON


def json_default(obj: Any) -> Any:
    """`default=` hook for json: NumPy scalars/arrays, tensors, datetimes, paths, sets, enums, UUIDs, bytes."""
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        return t.item() if t.ndim == 0 else t.tolist()
    if isinstance(obj, (dt.datetime, dt.date, dt.time)):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (uuid.UUID, decimal.Decimal)):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _finite(value: Any) -> Any:
    """NumPy NaN/inf become None so the output stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ImagingJSONEncoder(json.JSONEncoder):
    """json.JSONEncoder that understands the types image code returns (see json_default)."""

    def default(self, o: Any) -> Any:
        """Delegate to json_default."""
        return json_default(o)


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps with ImagingJSONEncoder."""
    return json.dumps(obj, cls=ImagingJSONEncoder, **kwargs)


def flask_json_provider() -> type:
    """A Flask JSON provider class using json_default (app.json = flask_json_provider()(app))."""
    from flask.json.provider import DefaultJSONProvider

    class ImagingJSONProvider(DefaultJSONProvider):
        """Flask's provider, extended with NumPy/torch/path/set support."""

        @staticmethod
        def default(o: Any) -> Any:
            """json_default, falling back to Flask's own (dataclasses, UUIDs, HTML)."""
            try:
                return json_default(o)
            except TypeError:
                return DefaultJSONProvider.default(o)

    return ImagingJSONProvider
