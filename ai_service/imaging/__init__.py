"""Image utilities shared by every endpoint and model: decoding, alpha, conversions, resizing, color spaces.

Pure functions of their inputs: imports nothing of ai_service but ai_service.errors and itself (no Flask, no settings).

Modules (import them directly; this package only re-exports the decoding entry points so that importing it
stays cheap - torch is loaded by `convert` only):

- io: format sniffing, bounded decoding (raster formats here, svg and psd in their own modules), encoding
- alpha: has_alpha / is_transparent, split, flatten, re-attach, color key, premultiplication
- convert: PIL <-> NumPy, PIL batches -> torch, model tensors -> PIL, gray conversion
- resize: alpha-aware resizing of images with Pillow's filters, fit modes with their geometry
- color: RGB <-> HSV/HLS/LAB/YCrCb/YUV/gray for NumPy and PIL (OpenCV's conventions)
- ops: the operation pipeline behind POST /api/v1/convert and the Tools page (validated by ai_service.schemas.convert)
- psd: Photoshop documents: the flattened image, the layer list, one layer alone
- vector: SVG drawings of model outputs (boxes, masks and line art traced along pixel edges)
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
