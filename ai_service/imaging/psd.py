"""Photoshop (PSD/PSB) documents: header validation, the flattened image, the layer list and single layers."""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

from PIL import Image

from ai_service.imaging.errors import (
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    LayerNotFoundError,
    check_canvas,
)

#: Photoshop's own limit for .psd (PSB allows 300000, which we never want to allocate).
MAX_PSD_SIDE: Final = 30_000
#: Structural bytes psd-tools may read for a single record (layers, resources) before refusing.
MAX_PSD_RECORD_BYTES: Final = 512 * 1024 * 1024
#: Layers (groups included) a listing walks before refusing the file.
MAX_PSD_LAYERS: Final = 10_000
#: What `layer=` reads as an index path rather than a name.
INDEX_PATH: Final = re.compile(r"\d{1,5}(?:/\d{1,5}){0,31}")
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
    """What callers may show about a layer: name, kind, placement, visibility, opacity and where it sits."""

    name: str
    kind: str
    #: The layer's own eye icon; `shown` adds its groups' (what the document displays).
    visible: bool
    left: int
    top: int
    width: int
    height: int
    #: 0 (transparent) to 1 (opaque), as Photoshop's percentage / 100.
    opacity: float
    blend_mode: str
    #: Names from the top level down, 'Group/Sub/Layer'.
    path: str
    #: Positions from the top level down, 0 = the bottom of its stack as stored: '2/0'; `layer=` takes it.
    index: str = ""
    #: The enclosing groups' names, outermost first.
    group: tuple[str, ...] = ()
    shown: bool = True

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


def decode_psd(
    data: bytes, *, max_pixels: int = 40_000_000, layer: str | None = None, layers: str = "merged"
) -> Image.Image:
    """The document as an L/LA/RGB/RGBA image of its canvas size.

    `layers="merged"`: the flattened image Photoshop stored (composited from the visible layers when it stored
    none); `"visible"`: composited from the visible layers whatever was stored; `layer` (a name, 'Group/Layer' or
    an index path like '2/0'): that layer (a group: its visible contents) alone, shown even when hidden.
    """
    from ai_service.imaging.io import normalize_mode

    psd = open_psd(data, max_pixels)
    canvas = (0, 0, psd.width, psd.height)
    if layer is not None:
        target = find_layer(psd, layer)
        im = render_layer(target, canvas)
    else:
        fresh = layers == "visible"
        im = _composite(lambda: psd.composite(ignore_preview=fresh), "The PSD file could not be flattened.")
    if im is None:
        raise CorruptImageError("The PSD file has no pixels to show.", format="psd")
    im.load()
    out = normalize_mode(im)
    out.info["source_size"] = out.size
    return out


def _composite(draw: Callable[[], Image.Image | None], failure: str) -> Image.Image | None:
    """Run a psd-tools compositing call, its assorted failures mapped to our decode errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return draw()
    except ImageDecodeError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError("The PSD file is too large to flatten.", format="psd") from exc
    except Exception as exc:  # noqa: BLE001 - psd-tools raises assorted types on damaged files
        raise CorruptImageError(failure, format="psd", reason=f"{type(exc).__name__}: {str(exc)[:200]}") from exc


def render_layer(target: Any, viewport: tuple[int, int, int, int]) -> Image.Image | None:
    """One layer (a group: its own visible contents) over transparency, shown even when it or its groups are
    hidden, cropped to `viewport` (x0, y0, x1, y1 in canvas pixels)."""
    return _composite(
        lambda: target.composite(viewport=viewport, layer_filter=lambda item: item is target or item.visible),
        "The PSD layer could not be rendered.",
    )


def psd_layers(data: bytes, *, max_pixels: int = 40_000_000) -> list[PsdLayer]:
    """Every layer (groups included, each followed by its contents) in stored order: bottom of each stack first."""
    return list_layers(open_psd(data, max_pixels))


def list_layers(psd: Any) -> list[PsdLayer]:
    """The layer listing of an opened document (see psd_layers)."""
    out: list[tuple[PsdLayer, Any]] = []
    try:
        _walk(psd, (), (), True, out)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CorruptImageError("The PSD layer list is damaged.", format="psd", reason=str(exc)[:200]) from exc
    return [entry for entry, _ in out]


def layer_objects(psd: Any) -> list[tuple[PsdLayer, Any]]:
    """The listing paired with psd-tools' layer objects (what rendering needs)."""
    out: list[tuple[PsdLayer, Any]] = []
    _walk(psd, (), (), True, out)
    return out


def _walk(group: Any, names: tuple[str, ...], indices: tuple[int, ...], shown: bool, out: list) -> None:
    """Depth-first in stored order, with name paths, index paths and the visibility the groups allow."""
    if len(out) > MAX_PSD_LAYERS:
        raise ImageTooLargeError(f"The PSD file has more than {MAX_PSD_LAYERS} layers.", format="psd")
    for position, layer in enumerate(group):
        name = str(layer.name)
        left, top, right, bottom = _bounds(layer)
        entry = PsdLayer(
            name=name,
            kind=str(layer.kind),
            visible=bool(layer.visible),
            left=left,
            top=top,
            width=right - left,
            height=bottom - top,
            opacity=round(int(layer.opacity) / 255, 4),
            blend_mode=str(getattr(layer.blend_mode, "name", layer.blend_mode)).lower(),
            path="/".join((*names, name)),
            index="/".join(str(i) for i in (*indices, position)),
            group=names,
            shown=shown and bool(layer.visible),
        )
        out.append((entry, layer))
        if layer.is_group():
            _walk(layer, (*names, name), (*indices, position), entry.shown, out)


def _bounds(layer: Any) -> tuple[int, int, int, int]:
    """A layer's box in canvas pixels; a group's is the union of its contents' (psd-tools gives hidden groups none)."""
    if not layer.is_group():
        left, top, right, bottom = (int(v) for v in layer.bbox)
        return (left, top, right, bottom) if right > left and bottom > top else (left, top, left, top)
    boxes = [_bounds(child) for child in layer]
    boxes = [box for box in boxes if box[2] > box[0] and box[3] > box[1]]
    if not boxes:
        return (0, 0, 0, 0)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def find_layer(psd: Any, selector: str) -> Any:
    """The layer an index path ('2/0'), a name path ('Group/Layer') or a name names; LayerNotFoundError otherwise.

    An index path that exists wins over a layer named like it; a name several layers share is refused (their
    index paths are listed, so the caller can pick one).
    """
    listing = layer_objects(psd)
    if INDEX_PATH.fullmatch(selector):
        for entry, layer in listing:
            if entry.index == selector:
                return layer
    matches = [(entry, layer) for entry, layer in listing if selector in (entry.path, entry.name)]
    exact = [(entry, layer) for entry, layer in matches if entry.path == selector]
    matches = exact or matches
    if len(matches) == 1:
        return matches[0][1]
    available = [{"index": entry.index, "path": entry.path} for entry, _ in listing[:50]]
    if matches:
        raise LayerNotFoundError(
            f"{len(matches)} layers are named {selector!r}; name one by its index path.",
            layer=selector,
            matches=[entry.index for entry, _ in matches],
        )
    if not listing:
        raise LayerNotFoundError("The PSD file has no layers, only its flattened image.", layer=selector)
    raise LayerNotFoundError(
        f"The PSD file has no layer {selector!r} (by index path, name path or name).", layer=selector, layers=available
    )
