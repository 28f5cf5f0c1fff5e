"""SVG rasterising with no network/file access, no entity expansion and bounded canvas and work."""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from typing import Final
from urllib.parse import unquote_to_bytes
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET
from PIL import Image

from ai_service.imaging.errors import (
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsafeImageError,
    check_canvas,
)

#: Largest SVG source we parse (bytes).
MAX_SVG_BYTES: Final = 5 * 1024 * 1024
#: Largest side of a rendered SVG, whatever the pixel budget.
MAX_SVG_SIDE: Final = 8192
#: Elements drawn after expanding <use> references ("billion laughs" built from <use>).
MAX_SVG_NODES: Final = 100_000
#: Size used when an SVG declares neither width/height nor a viewBox (the browser default).
DEFAULT_SVG_SIZE: Final = (300, 150)
#: Raster types an SVG may embed as data: URLs.
SAFE_DATA_MIME: Final = {"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp", "image/bmp"}

_PROLOG = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*|<!--.*?-->\s*|<!DOCTYPE\s+svg[^\[>]*(?:\[.*?\])?\s*>\s*|<\?[^>]*\?>\s*)*<(?:[A-Za-z_][\w.-]*:)?svg[\s>/]",
    re.S | re.I,
)
_UNITS: Final = {
    "": 1.0,
    "px": 1.0,
    "pt": 96 / 72,
    "pc": 16.0,
    "mm": 96 / 25.4,
    "cm": 96 / 2.54,
    "in": 96.0,
    "em": 16.0,
    "ex": 8.0,
}
_LENGTH = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-z%]*)\s*$", re.I)
_URL_FUNC = re.compile(r"url\(\s*['\"]?\s*([^'\")\s]*)", re.I)
_XLINK = "{http://www.w3.org/1999/xlink}href"
_DANGEROUS_TAGS: Final = {"script", "foreignobject", "iframe", "embed", "object", "handler", "listener"}


def looks_like_svg(head: bytes) -> bool:
    """True when the first element of an XML text (after prolog, comments, doctype) is <svg>."""
    return bool(_PROLOG.match(head))


def rasterize_svg(
    data: bytes,
    *,
    size: tuple[int, int] | None = None,
    cover: tuple[int, int] | None = None,
    max_pixels: int = 40_000_000,
) -> Image.Image:
    """Render SVG bytes to RGBA at exactly `size` (w, h), else at its intrinsic size scaled to cover `cover`."""
    root = parse_svg(data)
    check_svg_safety(data, root, max_pixels)
    natural = intrinsic_size(root)
    width, height = size if size else natural
    if size is None and cover is not None:
        width, height = cover_size(natural, cover, max_pixels)
    check_svg_canvas(width, height, max_pixels)
    out = _render(data, width, height)
    out.info["source_size"] = natural
    return out


def parse_svg(data: bytes) -> Element:
    """Parse with defusedxml: any entity declaration or external reference in the DTD is refused."""
    if len(data) > MAX_SVG_BYTES:
        raise ImageTooLargeError(
            f"The SVG source is larger than {MAX_SVG_BYTES // (1024 * 1024)} MB.", max_bytes=MAX_SVG_BYTES
        )
    if re.search(rb"<!ENTITY", data, re.I):
        raise UnsafeImageError(
            "SVG files may not declare XML entities (entity expansion / external entities).", reason="entity"
        )
    try:
        root = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise UnsafeImageError(
            "The SVG uses XML entities or external references, which are not allowed.", reason=type(exc).__name__
        ) from exc
    except SafeET.ParseError as exc:
        raise CorruptImageError("The SVG file is not well-formed XML.", reason=str(exc)[:200]) from exc
    if _local(root.tag) != "svg":
        raise CorruptImageError("The XML document's root element is not <svg>.", root=_local(root.tag))
    return root


def _local(tag: object) -> str:
    """Tag or attribute name without its {namespace}, lower-cased."""
    return str(tag).rsplit("}", 1)[-1].lower()


def check_svg_safety(data: bytes, root: Element, max_pixels: int) -> None:
    """Refuse scripts, event handlers, stylesheets PIs and every reference that leaves the document."""
    if re.search(rb"<\?xml-stylesheet", data, re.I):
        raise UnsafeImageError("SVG stylesheet processing instructions are not allowed.", reason="xml-stylesheet")
    for el in root.iter():
        tag = _local(el.tag)
        if tag in _DANGEROUS_TAGS:
            raise UnsafeImageError(f"SVG <{tag}> elements are not allowed.", reason="element", element=tag)
        if tag == "style" and el.text:
            _check_css(el.text, max_pixels)
        for name, value in el.attrib.items():
            attr = _local(name)
            if attr.startswith("on"):
                raise UnsafeImageError(
                    f"SVG event handler attributes ({attr}) are not allowed.", reason="script", attribute=attr
                )
            if attr in ("href", "src") or name == _XLINK:
                if tag != "a":  # hyperlinks are never fetched when rasterising
                    _check_reference(value, max_pixels)
            elif "url(" in value.lower() or attr == "style":
                _check_css(value, max_pixels)
    count_rendered_nodes(root)


def _check_css(text: str, max_pixels: int) -> None:
    """Style text may only point inside the document (url(#id)) or at safe embedded rasters."""
    if "@import" in text.lower():
        raise UnsafeImageError("SVG stylesheets may not @import other files.", reason="css-import")
    for target in _URL_FUNC.findall(text):
        _check_reference(target, max_pixels)


def _check_reference(value: str, max_pixels: int) -> None:
    """Allow '#fragment' and small data: rasters; anything else (http, file, relative paths) is refused."""
    target = value.strip()
    if not target or target.startswith("#"):
        return
    if target.lower().startswith("data:"):
        _check_data_url(target, max_pixels)
        return
    raise UnsafeImageError(
        "SVG files may not reference external resources (network or file URLs).",
        reason="external-reference",
        reference=target[:100],
    )


def _check_data_url(url: str, max_pixels: int) -> None:
    """An embedded image must be a raster type whose header size respects the pixel limit."""
    header, _, payload = url[5:].partition(",")
    parts = [p.strip().lower() for p in header.split(";")]
    mime = parts[0] if parts else ""
    if mime not in SAFE_DATA_MIME:
        raise UnsafeImageError(
            "SVG files may only embed PNG, JPEG, GIF, WebP or BMP images.", reason="data-url", mime=mime[:50]
        )
    try:
        raw = base64.b64decode(payload, validate=False) if "base64" in parts else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise CorruptImageError("An image embedded in the SVG is not valid base64.") from exc
    try:
        with Image.open(io.BytesIO(raw)) as embedded:
            w, h = embedded.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("An image embedded in the SVG has too many pixels.") from exc
    except Exception as exc:  # noqa: BLE001 - anything Pillow cannot open is refused
        raise CorruptImageError("An image embedded in the SVG cannot be read.") from exc
    if w * h > max_pixels:
        raise ImageTooLargeError(
            "An image embedded in the SVG has too many pixels.", width=w, height=h, max_pixels=max_pixels
        )


def count_rendered_nodes(root: Element, limit: int = MAX_SVG_NODES) -> int:
    """Count elements after expanding <use> references, refusing cycles and exponential (use-bomb) trees."""
    by_id = {el.get("id"): el for el in root.iter() if el.get("id")}
    memo: dict[int, int] = {}
    active: set[int] = set()

    def cost(el: Element) -> int:
        """Drawn elements under el, <use> targets included (memoised)."""
        key = id(el)
        if key in memo:
            return memo[key]
        if key in active:
            raise UnsafeImageError("The SVG contains a reference cycle.", reason="use-cycle")
        active.add(key)
        total = 1
        for child in el:
            total += cost(child)
            if total > limit:
                break
        if _local(el.tag) == "use":
            ref = (el.get("href") or el.get(_XLINK) or "").strip()
            if ref.startswith("#") and ref[1:] in by_id:
                total += cost(by_id[ref[1:]])
        active.discard(key)
        if total > limit:
            raise UnsafeImageError(
                f"The SVG expands to more than {limit:,} drawn elements.", reason="use-bomb", limit=limit
            )
        memo[key] = total
        return total

    try:
        return cost(root)
    except RecursionError as exc:
        raise UnsafeImageError("The SVG is nested too deeply.", reason="depth") from exc


def parse_length(value: str | None) -> float | None:
    """CSS length in px (units px/pt/pc/mm/cm/in/em/ex); None for missing, percentages or junk."""
    if not value:
        return None
    m = _LENGTH.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def intrinsic_size(root: Element) -> tuple[int, int]:
    """The size the SVG asks to be drawn at: width/height, else viewBox, else 300x150, aspect kept."""
    w, h = parse_length(root.get("width")), parse_length(root.get("height"))
    vb = _viewbox(root.get("viewBox"))
    if w is None and h is None and vb:
        w, h = vb[2], vb[3]
    elif w is None and h is not None:
        w = h * vb[2] / vb[3] if vb else h
    elif h is None and w is not None:
        h = w * vb[3] / vb[2] if vb else w
    if w is None or h is None:
        w, h = DEFAULT_SVG_SIZE
    return max(1, round(w)), max(1, round(h))


def _viewbox(value: str | None) -> tuple[float, float, float, float] | None:
    """Parse 'minx miny w h' (comma or space separated); None when absent or degenerate."""
    if not value:
        return None
    try:
        parts = [float(p) for p in re.split(r"[\s,]+", value.strip())]
    except ValueError:
        return None
    if len(parts) != 4 or parts[2] <= 0 or parts[3] <= 0:
        return None
    return parts[0], parts[1], parts[2], parts[3]


def cover_size(intrinsic: tuple[int, int], target: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """Smallest aspect-preserving size >= target (a resize hint), shrunk if needed to respect the caps."""
    w, h = intrinsic
    scale = max(target[0] / w, target[1] / h)
    scale = min(scale, MAX_SVG_SIDE / w, MAX_SVG_SIDE / h, (max_pixels / (w * h)) ** 0.5)
    return max(1, math.ceil(w * scale - 1e-9)), max(1, math.ceil(h * scale - 1e-9))


def check_svg_canvas(width: int, height: int, max_pixels: int) -> None:
    """Bound the raster we are about to allocate: each side and the pixel count."""
    if width <= 0 or height <= 0:
        raise CorruptImageError("The SVG size must be positive.", width=width, height=height)
    check_canvas("The SVG would render at", width, height, MAX_SVG_SIDE, max_pixels)


def _deny_fetch(url: str, resource_type: str) -> bytes:
    """cairosvg URL fetcher: only data: URLs (already vetted) are read; nothing touches network or disk."""
    if url and url.startswith("data:"):
        from cairosvg.url import fetch

        return fetch(url, resource_type)
    raise UnsafeImageError(
        "SVG files may not reference external resources.", reason="external-reference", reference=str(url)[:100]
    )


def _render(data: bytes, width: int, height: int) -> Image.Image:
    """Run cairosvg at exactly width x height and return an RGBA image."""
    from cairosvg.surface import PNGSurface

    try:
        png = PNGSurface.convert(
            bytestring=data, unsafe=False, url_fetcher=_deny_fetch, output_width=width, output_height=height
        )
    except ImageDecodeError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError("The SVG is too large to render.") from exc
    except Exception as exc:  # noqa: BLE001 - cairosvg raises many unrelated types on bad input
        raise CorruptImageError(
            "The SVG file could not be rendered.", reason=f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    out = Image.open(io.BytesIO(png))
    out.load()
    if out.size != (width, height):
        out = out.resize((width, height), Image.Resampling.LANCZOS)
    return out.convert("RGBA")
