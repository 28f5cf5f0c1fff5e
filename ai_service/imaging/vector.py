"""SVG drawings of model outputs: boxes with labels, masks and line art traced along pixel edges (the SVG *reader*
is ai_service/imaging/svg.py).

Pure functions of their inputs. Masks are traced exactly: every path runs along pixel boundaries (outer contours and
holes in one path, fill-rule evenodd), so rasterizing the drawing at its own size gives back the mask's pixels.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from xml.sax.saxutils import escape, quoteattr

import cv2
import numpy as np
from PIL import Image

from ai_service.imaging.io import encode_image

SVG_NS: Final = "http://www.w3.org/2000/svg"
XLINK_NS: Final = "http://www.w3.org/1999/xlink"
#: Box colors by class index (cycled): saturated, distinct on photos and on white.
BOX_COLORS: Final = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


@dataclass(frozen=True)
class Region:
    """One filled shape of a drawing: a class of a segmentation, or the lines of an edge map."""

    label: str
    color: str
    #: True where the region is, (H, W); traced in its own pixels and scaled to the drawing's size.
    mask: np.ndarray
    opacity: float = 1.0


def trace(mask: np.ndarray) -> str:
    """Path data (`d`) of a boolean mask along its pixel edges, holes included; "" for an empty mask.

    Each pixel becomes the cell (2y+2, 2x+2) of a grid twice as fine plus margins, whose edge and corner cells are
    set when a pixel beside them is: the contours of that grid (outer ones and holes, every boundary once) run
    through cells of odd coordinates, i.e. exactly along the pixel boundaries ((cell - 1) / 2), and fill-rule
    evenodd over all of them is the mask again.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return ""
    ys, xs = np.nonzero(mask)
    y0, x0 = int(ys.min()), int(xs.min())
    crop = mask[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1]
    h, w = crop.shape
    grid = np.zeros((2 * h + 3, 2 * w + 3), np.uint8)
    grid[2:-1:2, 2:-1:2] = crop
    grid = cv2.dilate(grid, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(grid, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    parts = []
    for contour in contours:
        points = _corners(contour.reshape(-1, 2).astype(np.int64))
        coords = [f"{_num((px - 1) / 2 + x0)} {_num((py - 1) / 2 + y0)}" for px, py in points]
        parts.append("M" + "L".join(coords) + "Z")
    return "".join(parts)


def _corners(points: np.ndarray) -> np.ndarray:
    """An 8-connected contour of the grid made axis-aligned, only its turning points kept.

    OpenCV cuts inner corners diagonally, from one edge cell to the next; the corner cell between them (the one
    whose coordinates are both odd) goes back in. Then points inside straight runs go (U-turns of one-pixel-wide
    lines stay).
    """
    following = np.roll(points, -1, axis=0)
    diagonal = (points[:, 0] != following[:, 0]) & (points[:, 1] != following[:, 1])
    odd_x = points[:, 0] % 2 == 1
    corner = np.where(
        odd_x[:, None], np.stack([points[:, 0], following[:, 1]], 1), np.stack([following[:, 0], points[:, 1]], 1)
    )
    path = np.stack([points, corner], 1).reshape(-1, 2)[np.stack([np.ones_like(diagonal), diagonal], 1).reshape(-1)]
    before, after = path - np.roll(path, 1, axis=0), np.roll(path, -1, axis=0) - path
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    dot = (before * after).sum(1)
    keep = (cross != 0) | (dot < 0)
    return path[keep] if keep.any() else path[:1]


def _num(value: float) -> str:
    """A coordinate without trailing zeros (pixel edges are integers or halves)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def document(width: int, height: int, body: Sequence[str], background: Image.Image | None = None) -> str:
    """A standalone SVG of the image's size (width, height and viewBox in its pixels), the image as its base layer
    when given (PNG, stretched to the canvas), then `body`."""
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="{SVG_NS}" xmlns:xlink="{XLINK_NS}" version="1.1" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">\n'
    )
    lines = [head]
    if background is not None:
        png = base64.b64encode(encode_image(background, "png")).decode("ascii")
        lines.append(
            f'<image id="input" x="0" y="0" width="{width}" height="{height}" preserveAspectRatio="none" '
            f'xlink:href="data:image/png;base64,{png}"/>\n'
        )
    lines.extend(body)
    lines.append("</svg>\n")
    return "".join(lines)


def regions_svg(width: int, height: int, regions: Sequence[Region], background: Image.Image | None = None) -> str:
    """One evenodd path per region, in its color, inside a group scaled from the masks' pixels to the canvas."""
    body = []
    for region in regions:
        d = trace(region.mask)
        if not d:
            continue
        mh, mw = region.mask.shape
        scale = "" if (mw, mh) == (width, height) else f' transform="scale({width / mw:.6g} {height / mh:.6g})"'
        opacity = "" if region.opacity >= 1 else f' fill-opacity="{region.opacity:.3g}"'
        body.append(
            f"<g{scale}><title>{escape(region.label)}</title>"
            f'<path class="region" data-label={quoteattr(region.label)} fill="{region.color}"{opacity} '
            f'fill-rule="evenodd" d="{d}"/></g>\n'
        )
    return document(width, height, body, background)


def box_color(index: int | None, label: str) -> str:
    """A stable color per class: by its index, else by its label."""
    key = index if index is not None else sum(label.encode("utf-8"))
    return BOX_COLORS[key % len(BOX_COLORS)]


def detections_svg(
    width: int, height: int, detections: Sequence[dict[str, Any]], background: Image.Image | None = None
) -> str:
    """Each detection as a group: its box outlined in its class color and a `label score` tag above it (inside the
    canvas), instance masks traced underneath when present."""
    stroke = max(1.0, round(min(width, height) / 200, 1))
    font = max(8.0, round(min(width, height) / 30, 1))
    body = []
    for item in detections:
        x0, y0, x1, y1 = (float(v) for v in item["box"])
        label, score = str(item.get("label", "")), float(item.get("score", 0.0))
        color = box_color(item.get("index"), label)
        text = f"{label} {score:.2f}"
        mask = item.get("mask")
        shape = ""
        if isinstance(mask, Image.Image):
            d = trace(np.asarray(mask.convert("L")) > 127)
            if d:
                shape = f'<path fill="{color}" fill-opacity="0.35" fill-rule="evenodd" d="{d}"/>'
        tag_w, tag_h = font * 0.6 * len(text) + 2 * stroke, font * 1.25
        ty = y0 - tag_h if y0 - tag_h >= 0 else y0
        body.append(
            f'<g class="detection" data-label={quoteattr(label)} data-score="{score:.6g}">'
            f"<title>{escape(text)}</title>{shape}"
            f'<rect x="{x0:g}" y="{y0:g}" width="{x1 - x0:g}" height="{y1 - y0:g}" fill="none" stroke="{color}" '
            f'stroke-width="{stroke:g}"/>'
            f'<rect x="{x0:g}" y="{ty:g}" width="{tag_w:.1f}" height="{tag_h:g}" fill="{color}"/>'
            f'<text x="{x0 + stroke:g}" y="{ty + font:g}" font-family="sans-serif" font-size="{font:g}" '
            f'fill="#ffffff">{escape(text)}</text></g>\n'
        )
    return document(width, height, body, background)
