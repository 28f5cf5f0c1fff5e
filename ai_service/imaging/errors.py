"""Decode errors (each subclass carries the stable code the API answers with; its status is in ai_service.errors)
and canvas limits."""

from __future__ import annotations

from ai_service.errors import ServiceError


class ImageDecodeError(ServiceError, ValueError):
    """Bytes that cannot become pixels; the message is written for the person who sent them."""

    code = "invalid_image"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(self.code, message, details)


class EmptyImageError(ImageDecodeError):
    """Zero bytes were sent."""

    code = "empty_file"


class UnsupportedFormatError(ImageDecodeError):
    """The bytes are not an image format we read (text, PDF, ...)."""

    code = "unsupported_format"


class CorruptImageError(ImageDecodeError):
    """A known format whose data is truncated or damaged."""

    code = "corrupt_image"


class ImageTooLargeError(ImageDecodeError):
    """Pixel count or canvas beyond the configured limit (decompression bombs)."""

    code = "image_too_large"


class UnsafeImageError(ImageDecodeError):
    """Content that tries to reach the network or file system, or expands without bound (SVG)."""

    code = "unsafe_image"


class LayerNotFoundError(ImageDecodeError):
    """`layer=` names no layer of the PSD file (or the file is not a layered one)."""

    code = "layer_not_found"


def check_canvas(what: str, width: int, height: int, max_side: int, max_pixels: int) -> None:
    """Refuse a raster beyond a per-side limit or the pixel budget before any pixel memory is allocated."""
    if width > max_side or height > max_side or width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} {width}x{height}; the limit is {max_side} px per side and {max_pixels:,} pixels.",
            width=width,
            height=height,
            max_side=max_side,
            max_pixels=max_pixels,
        )
