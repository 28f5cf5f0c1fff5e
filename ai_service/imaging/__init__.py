"""Image utilities shared by every endpoint and model: decoding, alpha, conversions, resizing, colour spaces.

Modules (import them directly; this package only re-exports the decoding entry points so that importing it
stays cheap - torch is loaded by `convert`, `resize` and `color` only):

- io: format sniffing, bounded decoding (raster formats here, svg and psd in their own modules), encoding
- alpha: has_alpha / is_transparent, split, flatten, re-attach, colour key, premultiplication
- convert: PIL <-> NumPy <-> OpenCV <-> torch, grey conversions, JSON encoder
- resize: Pillow-compatible resizing of images and batched tensors, fit modes with their geometry
- color: RGB <-> HSV/HLS/LAB/YCrCb/YUV/gray for NumPy/PIL (OpenCV) and torch tensors
- ops: the validated operation pipeline behind POST /api/v1/convert and the Tools page
"""
from __future__ import annotations

from ai_service.imaging.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsafeImageError,
    UnsupportedFormatError,
)
from ai_service.imaging.io import DEFAULT_MAX_PIXELS, decode_image, encode_image, sniff_format

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "CorruptImageError",
    "EmptyImageError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "UnsafeImageError",
    "UnsupportedFormatError",
    "decode_image",
    "encode_image",
    "sniff_format",
]
