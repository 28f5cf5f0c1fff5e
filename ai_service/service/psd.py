"""The layers of a PSD upload, Flask-free: what POST /api/v1/psd/layers answers and the upload page's layer picker
shows."""

from __future__ import annotations

from typing import Any, Final

from ai_service.imaging.encode import to_data_url
from ai_service.imaging.errors import ImageTooLargeError, UnsupportedFormatError
from ai_service.imaging.io import normalize_mode, sniff_format
from ai_service.imaging.psd import PsdLayer, find_layer, layer_objects, open_psd, read_psd_header, render_layer
from ai_service.schemas.psd import PsdLayersOptions

#: Layer PNGs of one answer may hold this many times the pixel limit in all (each is at most the canvas).
PNG_BUDGET_FACTOR: Final = 4


def describe_layers(data: bytes, options: PsdLayersOptions, max_pixels: int) -> dict[str, Any]:
    """The document's size and mode and its layers (PsdLayersResponse), with PNGs when asked for.

    Raises the decoder's errors: unsupported_format for anything but a PSD, corrupt_image, image_too_large (also
    when the PNGs asked for would exceed PNG_BUDGET_FACTOR x the pixel limit), layer_not_found.
    """
    if sniff_format(data) != "psd":
        raise UnsupportedFormatError("Send a Photoshop document (.psd or .psb); other formats have no layers.")
    header = read_psd_header(data)
    psd = open_psd(data, max_pixels)
    listing = layer_objects(psd)
    if options.layer is not None:
        chosen = find_layer(psd, options.layer)
        root = next(entry for entry, layer in listing if layer is chosen)
        listing = [(entry, layer) for entry, layer in listing if _within(entry, root)]
    if options.png:
        _check_budget([entry for entry, _ in listing], psd.width, psd.height, max_pixels)
    layers = [_layer_json(entry, layer, options.png, (psd.width, psd.height)) for entry, layer in listing]
    return {
        "width": psd.width,
        "height": psd.height,
        "color_mode": header.color_mode,
        "depth": header.depth,
        "layers": layers,
    }


def _within(entry: PsdLayer, root: PsdLayer) -> bool:
    """The chosen layer itself or something inside it (a group's contents)."""
    return entry.index == root.index or entry.index.startswith(root.index + "/")


def _clipped(entry: PsdLayer, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The layer's box within the canvas, or None when nothing of it is on the canvas."""
    x0, y0 = max(entry.left, 0), max(entry.top, 0)
    x1, y1 = min(entry.left + entry.width, width), min(entry.top + entry.height, height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _check_budget(entries: list[PsdLayer], width: int, height: int, max_pixels: int) -> None:
    """Refuse before rendering when the PNGs would add up to more than the budget."""
    total = 0
    for entry in entries:
        box = _clipped(entry, width, height)
        total += (box[2] - box[0]) * (box[3] - box[1]) if box else 0
    budget = PNG_BUDGET_FACTOR * max_pixels
    if total > budget:
        raise ImageTooLargeError(
            f"The layer PNGs would hold {total:,} pixels; the limit is {budget:,}. "
            "Ask for fewer with `layer` (one layer or group).",
            pixels=total,
            max_pixels=budget,
        )


def _layer_json(entry: PsdLayer, layer: Any, png: bool, canvas: tuple[int, int]) -> dict[str, Any]:
    """One PsdLayerInfo: the listing's facts, and the pixels when asked for and there are any."""
    body: dict[str, Any] = {
        "index": entry.index,
        "name": entry.name,
        "path": entry.path,
        "group": list(entry.group),
        "kind": entry.kind,
        "visible": entry.visible,
        "shown": entry.shown,
        "opacity": entry.opacity,
        "blend_mode": entry.blend_mode,
        "box": [entry.left, entry.top, entry.left + entry.width, entry.top + entry.height],
    }
    box = _clipped(entry, *canvas) if png else None
    if box is not None:
        image = render_layer(layer, box)
        if image is not None:
            body["png"] = to_data_url(normalize_mode(image), "png")
            body["png_box"] = list(box)
    return body
