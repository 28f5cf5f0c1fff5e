"""Image utilities shared by every endpoint and model: decoding, alpha, conversions, resizing, colour spaces."""
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
