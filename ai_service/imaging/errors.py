"""Decode errors (each subclass carries the HTTP status and stable code the API answers with) and canvas limits."""
from __future__ import annotations


class ImageDecodeError(ValueError):
    """Bytes that cannot become pixels; the message is written for the person who sent them."""

    code = "invalid_image"
    status = 422

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class EmptyImageError(ImageDecodeError):
    """Zero bytes were sent."""

    code = "empty_file"
    status = 400


class UnsupportedFormatError(ImageDecodeError):
    """The bytes are not an image format we read (text, PDF, ...)."""

    code = "unsupported_format"
    status = 415


class CorruptImageError(ImageDecodeError):
    """A known format whose data is truncated or damaged."""

    code = "corrupt_image"
    status = 422


class ImageTooLargeError(ImageDecodeError):
    """Pixel count or canvas beyond the configured limit (decompression bombs)."""

    code = "image_too_large"
    status = 413


class UnsafeImageError(ImageDecodeError):
    """Content that tries to reach the network or file system, or expands without bound (SVG)."""

    code = "unsafe_image"
    status = 422


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
