"""Scenes composed from scikit-learn's handwritten digits, with exact ground truth, for `digits-detect|segment`.

Training, the tests and make_examples use it; serving never does (the photos behind the digits come from
scikit-image, a development dependency). Everything is drawn from a seeded generator, so a scene set is the
same on every run: `scene_set("train", ...)` uses only the training digits of digits_training's split,
`scene_set("test", ...)` only the held-out ones, so a held-out scene never shows a digit the networks learned from.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

#: scikit-image sample photos shipped inside its wheel (nothing is downloaded).
PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "text",
    "retina",
    "horse",
)
#: Ink with alpha below this is not part of the digit's box; below MASK_ALPHA not part of its mask.
BOX_ALPHA, MASK_ALPHA = 0.3, 0.45
#: A digit's height as a share of the scene's longer side, and the number of digits per scene.
DIGIT_SHARE = (0.14, 0.34)
COUNT = (1, 6)
SIDE = (96, 256)
#: Scenes that are partially transparent PNGs, and those that went through a JPEG round trip.
TRANSPARENT_SHARE, JPEG_SHARE = 0.15, 0.5
#: The gray a transparent pixel is seen over by the networks (scene_input.GRAY): ink is drawn to contrast with it.
GRAY = 127.5
MIN_CONTRAST = 100.0
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Scene:
    """A composed picture and what is in it, in its own pixels."""

    #: RGB, or RGBA for a partially transparent scene.
    image: Image.Image
    #: (N, 4) float32 [x0, y0, x1, y1]: each digit's ink, pixel edges at integers.
    boxes: np.ndarray
    #: (N,) int64: each digit's value 0-9.
    labels: np.ndarray
    #: (H, W) uint8 class map: 0 background, 1 + digit where its ink is.
    classes: np.ndarray


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The sample photos as float32 RGB arrays (needs scikit-image, a development dependency)."""
    from skimage import data

    loaded = []
    for name in PHOTOS:
        pixels = np.asarray(getattr(data, name)())
        if pixels.dtype == bool:
            pixels = pixels.astype(np.uint8) * 255
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        loaded.append(pixels[..., :3].astype(np.float32))
    return tuple(loaded)


@lru_cache(maxsize=2)
def digit_pool(split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 digits (uint8, white ink on black) and labels of one side of digits_training's split."""
    from ai_service.models.builtin.digits_training import load_digits_split

    digits = load_digits_split()
    if split == "train":
        return digits.train_images, digits.train_labels
    return digits.test_images, digits.test_labels


def background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32: a crop of a sample photo (contrast lowered at random), or plain/gradient paper."""
    width, height = size
    if rng.random() < 0.2:
        top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            bottom = top
        t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        return np.broadcast_to((1 - t) * top + t * bottom, (height, width, 3)).astype(np.float32)
    photo = photos()[int(rng.integers(len(photos())))]
    ph, pw = photo.shape[:2]
    aspect = width / height
    crop_h = int(rng.uniform(0.3, 1.0) * min(ph, pw / aspect))
    crop_w = max(8, min(pw, round(crop_h * aspect)))
    crop_h = max(8, crop_h)
    y0, x0 = int(rng.integers(0, ph - crop_h + 1)), int(rng.integers(0, pw - crop_w + 1))
    crop = Image.fromarray(photo[y0 : y0 + crop_h, x0 : x0 + crop_w].astype(np.uint8), "RGB")
    pixels = np.asarray(crop.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    if rng.random() < 0.3:  # a tinted grey or a color cast
        pixels = pixels * rng.uniform(0.6, 1.2, 3).astype(np.float32)
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    return np.clip(mean + rng.uniform(0.3, 1.0) * (pixels - mean), 0, 255).astype(np.float32)


def render_ink(pixels: np.ndarray, height: int, aspect: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """One 8×8 digit as (h, w) ink alpha in [0, 1]: enlarged, slanted by `angle`, cropped to its ink."""
    width = max(4, round(height * aspect))
    resample = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[int(rng.integers(2))]
    image = Image.fromarray(pixels, "L").resize((width, height), resample)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    ink = np.asarray(image, dtype=np.float32) / 255.0
    ink = np.clip(ink * rng.uniform(1.0, 1.4), 0, 1)
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.02), np.flatnonzero(ink.max(axis=0) > 0.02)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def ink_color(rng: np.random.Generator, under: float, dark: bool = False) -> np.ndarray:
    """An RGB color whose luminance differs from `under` by at least MIN_CONTRAST, in any hue (darker if `dark`)."""
    if under > 127.5 or (dark and under >= MIN_CONTRAST):
        luma = rng.uniform(0, max(0.0, under - MIN_CONTRAST))
    else:
        luma = rng.uniform(min(255.0, under + MIN_CONTRAST), 255)
    color = luma + rng.uniform(-60, 60, 3)
    color += luma - float(color @ LUMA)
    return np.clip(color, 0, 255).astype(np.float32)


def _place(
    rng: np.random.Generator, shape: tuple[int, int], size: tuple[int, int], taken: list[np.ndarray]
) -> tuple[int, int] | None:
    """A top-left corner where an (h, w) patch fits inside the scene without touching the digits placed so far."""
    h, w = shape
    width, height = size
    if w > width or h > height:
        return None
    for _ in range(40):
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        box = np.array([x - 2, y - 2, x + w + 2, y + h + 2])
        if all(box[0] >= t[2] or box[2] <= t[0] or box[1] >= t[3] or box[3] <= t[1] for t in taken):
            return x, y
    return None


def compose_scene(
    rng: np.random.Generator,
    digits: np.ndarray,
    labels: np.ndarray,
    transparent: bool | None = None,
    size: tuple[int, int] | None = None,
) -> Scene:
    """One scene: a background, 1-6 digits of random size, slant, color and opacity, then blur, noise, JPEG."""
    if size is None:
        size = (int(rng.integers(SIDE[0], SIDE[1] + 1)), int(rng.integers(SIDE[0], SIDE[1] + 1)))
    width, height = size
    if transparent is None:
        transparent = bool(rng.random() < TRANSPARENT_SHARE)
    rgb = background(rng, size)
    base_alpha = np.ones((height, width), np.float32)
    if transparent:
        kind = int(rng.integers(3))
        base_alpha[:] = 0.0 if kind == 0 else rng.uniform(0.1, 0.8)
        if kind == 2:
            base_alpha *= np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    seen = rgb * base_alpha[..., None] + GRAY * (1 - base_alpha[..., None])
    ink_alpha = np.zeros((height, width), np.float32)
    ink_rgb = np.zeros((height, width, 3), np.float32)
    classes = np.zeros((height, width), np.uint8)
    boxes, found = [], []
    for _ in range(int(rng.integers(COUNT[0], COUNT[1] + 1))):
        index = int(rng.integers(len(labels)))
        digit_height = max(10, round(rng.uniform(*DIGIT_SHARE) * max(size)))
        ink = render_ink(digits[index], digit_height, rng.uniform(0.6, 1.1), rng.uniform(-15, 15), rng)
        corner = _place(rng, ink.shape, size, boxes)
        if corner is None:
            continue
        x, y = corner
        h, w = ink.shape
        region = (slice(y, y + h), slice(x, x + w))
        opacity = rng.uniform(0.6, 1.0) if transparent else rng.uniform(0.85, 1.0)
        dark = transparent and rng.random() < 0.7  # stickers: mostly dark ink, which shows on white pages too
        color = ink_color(rng, float(seen[region].mean(axis=(0, 1)) @ LUMA), dark)
        alpha = ink * opacity
        ink_rgb[region] = ink_rgb[region] * (1 - alpha[..., None]) + color * alpha[..., None]  # premultiplied
        ink_alpha[region] = np.maximum(ink_alpha[region], alpha)
        classes[region][ink >= MASK_ALPHA] = labels[index] + 1
        rows, cols = np.flatnonzero((ink >= BOX_ALPHA).any(axis=1)), np.flatnonzero((ink >= BOX_ALPHA).any(axis=0))
        boxes.append(np.array([x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1], np.float32))
        found.append(int(labels[index]))
    alpha = ink_alpha + base_alpha * (1 - ink_alpha)
    color = ink_rgb + rgb * (base_alpha * (1 - ink_alpha))[..., None]  # premultiplied: ink over the background
    color = np.where(alpha[..., None] > 0, color / np.maximum(alpha, 1e-6)[..., None], rgb)
    image = Image.fromarray(np.clip(np.rint(color), 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(0, 8), (height, width, 1)).astype(np.float32)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    if transparent:
        image.putalpha(Image.fromarray(np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8), "L"))
    elif rng.random() < JPEG_SHARE:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(35, 92)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return Scene(image, np.array(boxes, np.float32).reshape(-1, 4), np.array(found, np.int64), classes)


def scene_set(split: Literal["train", "test"], count: int, seed: int) -> list[Scene]:
    """`count` scenes from one side of the digit split, the same for the same seed."""
    digits, labels = digit_pool(split)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    return [compose_scene(rng, digits, labels) for _ in range(count)]


# ---- how well a model does on scenes ---------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of two sets of [x0, y0, x1, y1] boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0, y0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x1, y1 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def mean_average_precision(
    predictions: Sequence[Sequence[dict]],
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    iou: float = 0.5,
    classes: int = 10,
) -> float:
    """VOC-style mAP@iou (all-point interpolated AP, averaged over the classes present in the ground truth).

    `predictions`: per image, dicts with `box`, `index` (the digit) and `score`; `truths`: per image (boxes, labels).
    """
    aps = []
    for cls in range(classes):
        scored, positives = [], 0
        for image, (dets, (_, labels)) in enumerate(zip(predictions, truths)):
            positives += int((labels == cls).sum())
            scored += [(d["score"], image, d["box"]) for d in dets if d["index"] == cls]
        if positives == 0:
            continue
        scored.sort(key=lambda item: -item[0])
        used: dict[int, np.ndarray] = {}
        hits = []
        for _, image, box in scored:
            boxes, labels = truths[image]
            candidates = boxes[labels == cls]
            taken = used.setdefault(image, np.zeros(len(candidates), bool))
            overlaps = box_iou(np.asarray(box), candidates)[0] if len(candidates) else np.zeros(0)
            best = int(overlaps.argmax()) if len(overlaps) else -1
            hit = best >= 0 and overlaps[best] >= iou and not taken[best]
            if hit:
                taken[best] = True
            hits.append(hit)
        true_positives = np.cumsum(hits)
        recall = true_positives / positives
        precision = true_positives / np.arange(1, len(hits) + 1)
        recall = np.concatenate([[0.0], recall, [1.0]])
        precision = np.concatenate([[0.0], precision, [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.flatnonzero(recall[1:] != recall[:-1])
        aps.append(float(((recall[steps + 1] - recall[steps]) * precision[steps + 1]).sum()))
    return float(np.mean(aps)) if aps else 0.0


def mean_iou(predicted: Sequence[np.ndarray], truths: Sequence[np.ndarray], classes: int = 11) -> float:
    """Mean over classes (background included, absent classes skipped) of the IoU summed over all images."""
    intersection, union = np.zeros(classes), np.zeros(classes)
    for guess, truth in zip(predicted, truths):
        for cls in range(classes):
            a, b = guess == cls, truth == cls
            intersection[cls] += np.logical_and(a, b).sum()
            union[cls] += np.logical_or(a, b).sum()
    present = union > 0
    return float((intersection[present] / union[present]).mean())


def mask_classes(mask: Image.Image, classes: int = 11) -> np.ndarray:
    """(H, W) class indices of a segmentation mask colored with tasks.palette (color → index)."""
    from ai_service.models.tasks import palette

    colors = palette(classes).astype(np.int64)
    keys = (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]
    rgb = np.asarray(mask.convert("RGBA"))[..., :3].astype(np.int64)
    pixels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    order = np.argsort(keys)
    position = np.clip(np.searchsorted(keys[order], pixels), 0, classes - 1)
    found = keys[order][position] == pixels
    return np.where(found, order[position], 0).astype(np.uint8)  # unknown colors read as background
