"""Zero-copy NumPy views of Pillow pixel memory through Pillow's Arrow C export, with a safe fallback.

`np.asarray(pil_image)` goes through `tobytes()` and costs ~3 ms per 4 MB; Pillow (>= 11.2) also exports its
pixel buffer through the Arrow C data interface, which we read with ctypes. The exported buffer is
reference-counted by Pillow, so a view stays valid after the image is deleted. Anything unexpected (a
multi-block image, an unknown layout, an older Pillow) falls back to `np.asarray`. Pillow 12 crashes (SIGSEGV)
exporting an image that wraps outside memory (`Image.fromarray`, `frombuffer`: `im.readonly`), so those are only
exported from Pillow 13 on (the `gradio` extra caps Pillow below 13).
"""

from __future__ import annotations

import ctypes
from typing import Any, Final

import numpy as np
from PIL import Image


class _ArrowSchema(ctypes.Structure):
    """struct ArrowSchema (Arrow C data interface)."""


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.POINTER(_ArrowSchema)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class _ArrowArray(ctypes.Structure):
    """struct ArrowArray (Arrow C data interface)."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.POINTER(_ArrowArray)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

#: Whether this Pillow exports buffer-backed (readonly) images safely: 12.x dereferences a missing block list.
_EXPORTS_MAPPED: Final = int(Image.__version__.split(".")[0]) >= 13

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

#: Pillow's in-memory layout per mode: bytes per pixel and the channels a caller sees.
_LAYOUT: Final = {"L": (1, None), "RGBA": (4, None), "RGB": (4, slice(0, 3)), "LA": (4, [0, 3])}


class _Buffer:
    """Owns the Arrow capsules (so Pillow's buffer stays alive) and exposes it as a read-only array."""

    def __init__(self, capsules: tuple[Any, Any], address: int, shape: tuple[int, ...]) -> None:
        """Keep the capsules; describe the memory for NumPy."""
        self.capsules = capsules
        self.__array_interface__ = {"shape": shape, "typestr": "|u1", "data": (address, True), "version": 3}


def _arrow_view(im: Image.Image) -> np.ndarray | None:
    """(H, W) or (H, W, 4) uint8 view of Pillow's own buffer, or None when it cannot be exported as one block."""
    bpp, _ = _LAYOUT[im.mode]
    w, h = im.size
    if im.readonly and not _EXPORTS_MAPPED:
        return None
    try:
        schema_capsule, array_capsule = im.__arrow_c_array__()
        schema = _ArrowSchema.from_address(_capsule_pointer(schema_capsule, b"arrow_schema"))
        array = _ArrowArray.from_address(_capsule_pointer(array_capsule, b"arrow_array"))
    except (AttributeError, ValueError, TypeError, OSError, NotImplementedError):
        return None
    if array.length != w * h or array.offset != 0:
        return None
    if bpp == 1:
        if schema.format != b"C" or array.n_buffers != 2 or not array.buffers[1]:
            return None
        address, shape = array.buffers[1], (h, w)
    else:
        if schema.format != b"+w:4" or array.n_children != 1 or schema.n_children != 1:
            return None
        child = array.children[0].contents
        if schema.children[0].contents.format != b"C" or child.length != 4 * w * h or child.offset != 0:
            return None
        if child.n_buffers != 2 or not child.buffers[1]:
            return None
        address, shape = child.buffers[1], (h, w, 4)
    return np.asarray(_Buffer((schema_capsule, array_capsule), address, shape))


def pixel_view(im: Image.Image) -> np.ndarray:
    """Read-only HW (L) or HWC (LA/RGB/RGBA) uint8 pixels without copying when possible.

    The view may alias the image: use it before the image is modified in place (or take pixel_array).
    RGB and LA views are strided (Pillow stores them in 4 bytes per pixel).
    """
    if im.mode not in _LAYOUT or im.width == 0 or im.height == 0:
        return np.asarray(im)
    im.load()
    raw = _arrow_view(im)
    if raw is None:
        return np.asarray(im)
    pick = _LAYOUT[im.mode][1]
    if pick is None:
        return raw
    out = raw[..., pick]
    out.flags.writeable = False  # LA's fancy index is a copy; keep the contract read-only anyway
    return out


def pixel_view4(im: Image.Image) -> np.ndarray | None:
    """For RGB/RGBA images: the raw 4-byte-per-pixel view (RGBX for RGB), contiguous; None if unavailable."""
    if im.mode not in ("RGB", "RGBA") or im.width == 0 or im.height == 0:
        return None
    im.load()
    return _arrow_view(im)


def pixel_array(im: Image.Image) -> np.ndarray:
    """A private, contiguous copy of the pixels (what np.asarray gives, several times faster)."""
    return np.array(pixel_view(im), order="C", copy=True)
