"""Photoshop (PSD/PSB) documents: header validation, flattened composite and the layer list."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Final

from PIL import Image

from ai_service.imaging.errors import CorruptImageError, ImageDecodeError, ImageTooLargeError, check_canvas

#: Photoshop's own limit for .psd (PSB allows 300000, which we never want to allocate).
MAX_PSD_SIDE: Final = 30_000
#: Structural bytes psd-tools may read for a single record (layers, resources) before refusing.
MAX_PSD_RECORD_BYTES: Final = 512 * 1024 * 1024
_COLOR_MODES: Final = {
    0: "bitmap",
    1: "grayscale",
    2: "indexed",
    3: "rgb",
    4: "cmyk",
    7: "multichannel",
    8: "duotone",
    9: "lab",
}


@dataclass(frozen=True)
class PsdHeader:
    """The 26-byte PSD file header, validated."""

    version: int
    channels: int
    width: int
    height: int
    depth: int
    color_mode: str


@dataclass(frozen=True)
class PsdLayer:
    """What callers may show about a layer: name, kind, placement, visibility, opacity and group path."""

    name: str
    kind: str
    visible: bool
    left: int
    top: int
    width: int
    height: int
    opacity: int
    blend_mode: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def read_psd_header(data: bytes) -> PsdHeader:
    """Parse and sanity-check the header so malformed files fail before psd-tools allocates anything."""
    if len(data) < 26:
        raise CorruptImageError("The PSD file is truncated (header incomplete).", format="psd")
    sig, version, reserved, channels, height, width, depth, mode = struct.unpack_from(">4sH6sHIIHH", data, 0)
    if sig != b"8BPS" or version not in (1, 2) or reserved != b"\x00" * 6:
        raise CorruptImageError("The PSD header is malformed (signature, version or reserved bytes).", format="psd")
    if not 1 <= channels <= 56 or depth not in (1, 8, 16, 32) or mode not in _COLOR_MODES:
        raise CorruptImageError(
            "The PSD header is malformed (channels, depth or color mode).",
            format="psd",
            channels=channels,
            depth=depth,
            mode=mode,
        )
    if width == 0 or height == 0:
        raise CorruptImageError("The PSD header declares an empty canvas.", format="psd")
    return PsdHeader(version, channels, width, height, depth, _COLOR_MODES[mode])


def open_psd(data: bytes, max_pixels: int) -> Any:
    """Open with psd-tools under parse and allocation budgets derived from the pixel limit."""
    from psd_tools import ParseLimitError, ParseLimits, PSDImage

    header = read_psd_header(data)
    check_canvas("The PSD canvas is", header.width, header.height, MAX_PSD_SIDE, max_pixels)
    budget = max(64 * 1024 * 1024, max_pixels * 4 * 8)
    limits = ParseLimits(max_read_bytes=MAX_PSD_RECORD_BYTES, max_total_bytes=max(len(data) * 4, MAX_PSD_RECORD_BYTES))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return PSDImage.open(io.BytesIO(data), max_alloc_bytes=budget, parse_limits=limits)
    except ParseLimitError as exc:
        raise ImageTooLargeError("The PSD file's structure exceeds our parsing limits.", format="psd") from exc
    except MemoryError as exc:
        raise ImageTooLargeError("The PSD file is too large to read.", format="psd") from exc
    except Exception as exc:  # noqa: BLE001 - psd-tools raises assorted types on damaged files
        raise CorruptImageError(
            "The PSD file is damaged or truncated and cannot be read.",
            format="psd",
            reason=f"{type(exc).__name__}: {str(exc)[:200]}",
        ) from exc


def decode_psd(data: bytes, *, max_pixels: int = 40_000_000) -> Image.Image:
    """Flattened composite of a PSD as an L/LA/RGB/RGBA image (the stored preview when Photoshop saved one)."""
    from ai_service.imaging.io import normalize_mode

    psd = open_psd(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = psd.composite()
    except ImageDecodeError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError("The PSD file is too large to flatten.", format="psd") from exc
    except Exception as exc:  # noqa: BLE001
        raise CorruptImageError(
            "The PSD file could not be flattened.", format="psd", reason=f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    if im is None:
        raise CorruptImageError("The PSD file has no pixels to show.", format="psd")
    im.load()
    out = normalize_mode(im)
    out.info["source_size"] = out.size
    return out


def psd_layers(data: bytes, *, max_pixels: int = 40_000_000) -> list[PsdLayer]:
    """Every layer (groups included, top-level first) with name, kind, bounds, visibility and group path."""
    psd = open_psd(data, max_pixels)
    out: list[PsdLayer] = []
    try:
        _walk(psd, "", out)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CorruptImageError("The PSD layer list is damaged.", format="psd", reason=str(exc)[:200]) from exc
    return out


def _walk(group: Any, prefix: str, out: list[PsdLayer]) -> None:
    """Depth-first listing in document order, with 'Group/Sub/Layer' paths."""
    for layer in group:
        path = f"{prefix}/{layer.name}" if prefix else str(layer.name)
        out.append(
            PsdLayer(
                name=str(layer.name),
                kind=str(layer.kind),
                visible=bool(layer.visible),
                left=int(layer.left),
                top=int(layer.top),
                width=int(layer.width),
                height=int(layer.height),
                opacity=int(layer.opacity),
                blend_mode=str(getattr(layer.blend_mode, "name", layer.blend_mode)).lower(),
                path=path,
            )
        )
        if layer.is_group():
            _walk(layer, path, out)
