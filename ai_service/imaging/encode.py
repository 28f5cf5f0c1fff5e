"""Images inside responses: data URLs for JSON, small previews for server-rendered pages."""

from __future__ import annotations

import base64

from PIL import Image

from ai_service.imaging.io import decode_image, encode_image, mime_type

PREVIEW_SIDE = 384


def data_url(data: bytes, fmt: str) -> str:
    """Encoded image bytes as a `data:` URL, for JSON responses and <img src>."""
    return f"data:{mime_type(fmt)};base64," + base64.b64encode(data).decode("ascii")


def to_data_url(image: Image.Image, fmt: str = "png", quality: int = 90) -> str:
    """An image as a `data:` URL, for JSON responses and <img src>."""
    fmt = fmt.lower().replace("jpg", "jpeg")
    return data_url(encode_image(image, fmt, quality=quality), fmt)


def preview_data_url(data: bytes, max_pixels: int, side: int = PREVIEW_SIDE) -> str:
    """Decode, shrink to fit `side` and return a PNG data URL (alpha kept) for the result page."""
    image = decode_image(data, max_pixels=max_pixels, target_size=(side, side))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return to_data_url(image, "png")
