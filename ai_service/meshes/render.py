"""Views of a model without a GPU or a display: an orthographic, z-buffered numpy rasteriser, lit and shaded.

Triangles are rasterised in batches grouped by the size of their screen bounding box (each batch tests the pixel
centres of its boxes at once), the nearest fragment per pixel wins, and shading happens once per visible pixel:
Lambert plus ambient from a light above-left of the camera, per-vertex normals interpolated where the surface is
smooth and the face normal across creases (edges sharper than CREASE_DEGREES), both sides lit. Colors come from
the texture (sampled at the interpolated UV), vertex or face colors, the material color, or a neutral gray. Every
view of one model shares one scale, given as `scale` (pixels per model unit), so views compare and measure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import trimesh
from PIL import Image

from ai_service.imaging.alpha import parse_color as imaging_color
from ai_service.meshes.facts import texture_image
from ai_service.meshes.load import Model

#: Named views: (azimuth, elevation) in degrees; azimuth 0 looks at the model's front (+Z towards the camera, Y up).
NAMED_VIEWS: Final = {
    "front": (0.0, 0.0),
    "back": (180.0, 0.0),
    "left": (-90.0, 0.0),
    "right": (90.0, 0.0),
    "side": (90.0, 0.0),
    "top": (0.0, 90.0),
    "bottom": (0.0, -90.0),
    "iso": (45.0, math.degrees(math.atan(1 / math.sqrt(2)))),
}
#: Elevation of turntable views: a little above, so tops read as tops.
TURNTABLE_ELEVATION: Final = 20.0
#: Fraction of the image left empty on each side of the model's bounding sphere.
MARGIN: Final = 0.05
CREASE_DEGREES: Final = 30.0
AMBIENT: Final = 0.32
DIFFUSE: Final = 0.68
DEFAULT_COLOR: Final = (190, 190, 190, 255)
#: Most candidate pixels one rasterising batch tests (bounds its memory: ~40 bytes each).
BATCH_PIXELS: Final = 1 << 21
#: Turns a Z-up model (STL and PLY from CAD tools) Y-up: (x, y, z) -> (x, z, -y).
Z_UP: Final = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class View:
    """Where the camera looks from."""

    name: str
    azimuth: float
    elevation: float

    def basis(self) -> np.ndarray:
        """Rows: the camera's right, up and towards-camera axes in world coordinates (Y up)."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        toward = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        right = np.array([math.cos(az), 0.0, -math.sin(az)])
        return np.array([right, np.cross(toward, right), toward])


def turntable(count: int, elevation: float = TURNTABLE_ELEVATION) -> list[View]:
    """`count` views evenly around the vertical axis, the first from the front."""
    return [View(f"turntable-{i}", round(360.0 * i / count, 3), elevation) for i in range(count)]


def named_views(names: Sequence[str]) -> list[View]:
    """Views by name (front, back, left, right, side, top, bottom, iso)."""
    return [View(name, *NAMED_VIEWS[name]) for name in names]


@dataclass(frozen=True)
class Rendered:
    """One view as an image, with what it shows."""

    view: View
    image: Image.Image
    #: Pixels per model unit (the same for every view of one call).
    scale: float
    #: Fraction of the image the model covers.
    coverage: float


class Surface:
    """A model's triangles and how each is colored, gathered once for every view."""

    def __init__(self, model: Model, up: str = "y") -> None:
        rotation = Z_UP if up == "z" else np.eye(3)
        vertices, faces, normals, corner_colors, corner_uv, texture_of = [], [], [], [], [], []
        self.textures: list[np.ndarray] = []
        offset = 0
        for part in model.parts:
            vertices.append(part.vertices @ rotation.T)
            faces.append(part.faces + offset)
            normals.append(part.vertex_normals @ rotation.T)
            colors, uv, texture = part_colors(part)
            corner_colors.append(colors)
            corner_uv.append(uv if uv is not None else np.zeros((len(part.faces), 3, 2), np.float32))
            if texture is not None:
                self.textures.append(texture)
            texture_of.append(np.full(len(part.faces), len(self.textures) - 1 if texture is not None else -1))
            offset += len(part.vertices)
        self.vertices = np.concatenate(vertices)
        self.faces = np.concatenate(faces)
        self.vertex_normals = np.concatenate(normals)
        self.colors = np.concatenate(corner_colors)
        self.uv = np.concatenate(corner_uv)
        self.texture_of = np.concatenate(texture_of)
        corners = self.vertices[self.faces]
        face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        lengths = np.linalg.norm(face_normals, axis=1, keepdims=True)
        self.face_normals = face_normals / np.where(lengths > 0, lengths, 1.0)
        cosines = np.einsum("fcj,fj->fc", self.vertex_normals[self.faces], self.face_normals)
        #: Faces shaded flat: a corner's vertex normal is over CREASE_DEGREES from the face's (a box's edges).
        self.flat = np.abs(cosines).min(axis=1) < math.cos(math.radians(CREASE_DEGREES))
        low, high = self.vertices.min(axis=0), self.vertices.max(axis=0)
        self.center = (low + high) / 2.0
        self.radius = max(float(np.linalg.norm(high - low)) / 2.0, 1e-9)


def part_colors(part: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(corner colors (F, 3, 4) uint8, corner UVs (F, 3, 2) or None, texture RGBA array or None) of one part."""
    visual = part.visual
    count = len(part.faces)
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        color = np.asarray(getattr(material, "main_color", DEFAULT_COLOR), dtype=np.uint8)[:4]
        image = texture_image(material)
        uv = visual.uv
        if image is not None and uv is not None and len(uv) == len(part.vertices):
            texture = np.asarray(image.convert("RGBA"), dtype=np.uint8)
            return np.broadcast_to(color, (count, 3, 4)), np.asarray(uv, np.float32)[part.faces], texture
        return np.broadcast_to(color, (count, 3, 4)), None, None
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        return np.asarray(visual.vertex_colors, np.uint8)[part.faces], None, None
    if kind == "face":
        return np.repeat(np.asarray(visual.face_colors, np.uint8)[:, None, :], 3, axis=1), None, None
    return np.broadcast_to(np.array(DEFAULT_COLOR, np.uint8), (count, 3, 4)), None, None


def render_views(
    model: Model,
    views: Sequence[View],
    size: int = 512,
    background: tuple[int, int, int] | None = None,
    up: str = "y",
    antialias: bool = True,
) -> list[Rendered]:
    """Each view as a size x size image: RGBA with a transparent background, or RGB on `background`."""
    surface = Surface(model, up)
    factor = 2 if antialias else 1
    scale = size * factor * (1.0 - 2.0 * MARGIN) / (2.0 * surface.radius)
    rendered = []
    for view in views:
        rgba = shade(surface, view, size * factor, scale)
        image = Image.fromarray(rgba, "RGBA")
        if factor > 1:
            image = downsample(rgba, factor)
        coverage = float((np.asarray(image)[..., 3] >= 128).mean())
        if background is not None:
            canvas = Image.new("RGB", image.size, background)
            canvas.paste(image, mask=image.getchannel("A"))
            image = canvas
        rendered.append(Rendered(view, image, scale / factor, coverage))
    return rendered


def downsample(rgba: np.ndarray, factor: int) -> Image.Image:
    """Box-filter supersampled pixels, colors weighted by alpha (edges blend into transparency, not black)."""
    height, width = rgba.shape[0] // factor, rgba.shape[1] // factor
    blocks = rgba.astype(np.float32).reshape(height, factor, width, factor, 4)
    alpha = blocks[..., 3:4]
    weight = alpha.sum(axis=(1, 3))
    color = (blocks[..., :3] * alpha).sum(axis=(1, 3)) / np.where(weight > 0, weight, 1.0)
    out = np.concatenate([color, weight / (factor * factor)], axis=-1)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGBA")


def shade(surface: Surface, view: View, side: int, scale: float) -> np.ndarray:
    """One view's RGBA pixels (side x side) at `scale` pixels per unit."""
    basis = view.basis()
    camera = (surface.vertices - surface.center) @ basis.T
    screen_x = side / 2.0 + camera[:, 0] * scale
    screen_y = side / 2.0 - camera[:, 1] * scale
    faces, weights = rasterize(
        np.stack([screen_x, screen_y], axis=1)[surface.faces], camera[:, 2][surface.faces], side, side
    )
    rgba = np.zeros((side * side, 4), np.uint8)
    covered = np.flatnonzero(faces >= 0)
    face = faces[covered]
    bary = weights[covered]
    normal = np.einsum("pc,pcj->pj", bary, surface.vertex_normals[surface.faces[face]])
    flat = surface.flat[face]
    normal[flat] = surface.face_normals[face[flat]]
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    toward = basis[2]
    normal *= np.where(normal @ toward < 0, -1.0, 1.0)[:, None]  # both sides lit: the side facing the camera
    light = -0.35 * basis[0] + 0.55 * basis[1] + 0.76 * basis[2]
    intensity = AMBIENT + DIFFUSE * np.clip(normal @ (light / np.linalg.norm(light)), 0.0, 1.0)
    color = base_colors(surface, face, bary)
    rgba[covered, :3] = np.clip(color[:, :3] * intensity[:, None] + 0.5, 0, 255).astype(np.uint8)
    rgba[covered, 3] = 255
    return rgba.reshape(side, side, 4)


def base_colors(surface: Surface, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Unlit color per covered pixel (float RGBA): interpolated corner colors, or the texture at the pixel's UV."""
    color = np.einsum("pc,pcj->pj", bary, surface.colors[face].astype(np.float32))
    textured = surface.texture_of[face]
    for index, texture in enumerate(surface.textures):
        pixels = np.flatnonzero(textured == index)
        if not len(pixels):
            continue
        uv = np.einsum("pc,pcj->pj", bary[pixels], surface.uv[face[pixels]])
        height, width = texture.shape[:2]
        column = (np.mod(uv[:, 0], 1.0) * width).astype(np.int64).clip(0, width - 1)
        row = ((1.0 - np.mod(uv[:, 1], 1.0)) * height).astype(np.int64).clip(0, height - 1)
        color[pixels] = texture[row, column].astype(np.float32)
    return color


def rasterize(xy: np.ndarray, depth: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The nearest triangle at each pixel centre (-1: none) and its barycentric weights there.

    `xy` (F, 3, 2) screen corners, `depth` (F, 3) towards the camera (larger is nearer)."""
    faces = np.full(width * height, -1, np.int64)
    weights = np.zeros((width * height, 3), np.float32)
    nearest = np.full(width * height, -np.inf)
    ax, ay = xy[:, 0, 0], xy[:, 0, 1]
    e1, e2 = xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    low, high = xy.min(axis=1), xy.max(axis=1)
    x0 = np.maximum(np.ceil(low[:, 0] - 0.5), 0).astype(np.int64)
    y0 = np.maximum(np.ceil(low[:, 1] - 0.5), 0).astype(np.int64)
    x1 = np.minimum(np.floor(high[:, 0] - 0.5), width - 1).astype(np.int64)
    y1 = np.minimum(np.floor(high[:, 1] - 0.5), height - 1).astype(np.int64)
    span = np.maximum(x1 - x0, y1 - y0) + 1
    live = np.flatnonzero((np.abs(area) > 1e-12) & (x1 >= x0) & (y1 >= y0))
    if not len(live):
        return faces, weights
    buckets = np.ceil(np.log2(np.maximum(span[live], 1))).astype(np.int64)
    for bucket in np.unique(buckets):
        tile = 1 << int(bucket)
        members = live[buckets == bucket]
        step = max(BATCH_PIXELS // (tile * tile), 1)
        ox, oy = np.meshgrid(np.arange(tile), np.arange(tile))
        ox, oy = ox.ravel(), oy.ravel()
        for start in range(0, len(members), step):
            tri = members[start : start + step]
            px = x0[tri, None] + ox[None, :]
            py = y0[tri, None] + oy[None, :]
            inside = (px <= x1[tri, None]) & (py <= y1[tri, None])
            dx, dy = px + 0.5 - ax[tri, None], py + 0.5 - ay[tri, None]
            inv = 1.0 / area[tri, None]
            w1 = (dx * e2[tri, 1, None] - dy * e2[tri, 0, None]) * inv
            w2 = (dy * e1[tri, 0, None] - dx * e1[tri, 1, None]) * inv
            w0 = 1.0 - w1 - w2
            inside &= (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
            which, slot = np.nonzero(inside)
            if not len(which):
                continue
            b0, b1, b2 = w0[which, slot], w1[which, slot], w2[which, slot]
            owner = tri[which]
            z = b0 * depth[owner, 0] + b1 * depth[owner, 1] + b2 * depth[owner, 2]
            pixel = py[which, slot] * width + px[which, slot]
            order = np.lexsort((-z, pixel))
            pixel, z, owner = pixel[order], z[order], owner[order]
            first = np.ones(len(pixel), bool)
            first[1:] = pixel[1:] != pixel[:-1]
            keep = order[first]
            pixel, z, owner = pixel[first], z[first], owner[first]
            nearer = z > nearest[pixel]
            pixel, keep = pixel[nearer], keep[nearer]
            nearest[pixel] = z[nearer]
            faces[pixel] = owner[nearer]
            weights[pixel] = np.stack([b0[keep], b1[keep], b2[keep]], axis=1)
    return faces, weights


def parse_color(value: Any) -> tuple[int, int, int] | None:
    """None for transparent; else an (r, g, b) the imaging library reads."""
    if value is None or str(value).strip().lower() in ("", "transparent", "none"):
        return None
    return imaging_color(value)
