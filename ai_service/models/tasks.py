"""Turning raw network outputs into per-image results for each task (detections, masks, images)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ai_service.imaging.alpha import reattach_alpha
from ai_service.imaging.convert import tensor_to_pil
from ai_service.imaging.geometry import Geometry

BACKGROUND_NAMES = {"background", "__background__", "bg", "_background_"}
MAX_DETECTIONS = 300


def per_image_outputs(raw: Any, task: str) -> Any:
    """Normalize what networks return (tensors, torchvision dicts, tuples) to something indexable per image."""
    if isinstance(raw, Mapping) and "out" in raw:
        raw = raw["out"]
    if task == "detection":
        if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[1], list):
            raw = raw[1]
        return list(raw)
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
        raw = raw[0]
    if not isinstance(raw, torch.Tensor):
        raise TypeError(f"a {task} model must return a tensor, got {type(raw).__name__}")
    return raw


def stack(outputs: Any) -> torch.Tensor:
    return torch.stack(list(outputs)) if isinstance(outputs, (list, tuple)) else outputs


def label_for(index: int, labels: Sequence[str]) -> str:
    return labels[index] if 0 <= index < len(labels) else str(index)


def detections(item: Any, labels: Sequence[str], threshold: float) -> dict[str, Any]:
    """A torchvision-style dict (boxes, labels, scores) or a (K, 6) tensor [x0, y0, x1, y1, score, class]."""
    if isinstance(item, Mapping):
        boxes, scores, classes = item["boxes"], item["scores"], item["labels"]
    elif isinstance(item, torch.Tensor) and item.dim() == 2 and item.shape[-1] == 6:
        boxes, scores, classes = item[:, :4], item[:, 4], item[:, 5]
    else:
        raise TypeError("a detection model must return per image a dict with boxes/labels/scores "
                        "or a (K, 6) tensor [x0, y0, x1, y1, score, class]")
    keep = scores.float() >= threshold
    boxes, scores, classes = boxes[keep].float().cpu(), scores[keep].float().cpu(), classes[keep].long().cpu()
    order = scores.argsort(descending=True)[:MAX_DETECTIONS]
    found = [{"label": label_for(int(classes[i]), labels), "index": int(classes[i]), "score": round(float(scores[i]), 6),
              "box": [round(float(v), 2) for v in boxes[i].tolist()]} for i in order.tolist()]
    return {"detections": found}


def palette(count: int) -> np.ndarray:
    """Distinct colors per class index (the PASCAL VOC bit-interleaved color map), shape (count, 3)."""
    colors = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors[index] = (r, g, b)
    return colors


def segmentation(logits: torch.Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """(K, H, W) logits → a mask image and the classes present with their share of pixels.

    One channel: a binary L mask (255 = foreground, sigmoid > 0.5). Several: an RGBA mask colored per
    class (background transparent, so it overlays the image) plus a legend mapping colors to labels.
    """
    if logits.dim() != 3:
        raise TypeError(f"a segmentation model must return (N, K, H, W) logits, got a per-image shape "
                        f"{tuple(logits.shape)}")
    if logits.shape[0] == 1:
        mask = (logits[0].float().sigmoid() > 0.5).cpu().numpy()
        share = round(float(mask.mean()), 6)
        return {"mask": Image.fromarray((mask * 255).astype(np.uint8), "L"),
                "classes": [{"index": 1, "label": label_for(0, labels) if labels else "foreground",
                             "fraction": share}]}
    indices = logits.argmax(dim=0).to(torch.int64).cpu().numpy()
    count = logits.shape[0]
    colors = palette(count)
    counts = np.bincount(indices.ravel(), minlength=count)
    transparent = 0 if (not labels or label_for(0, labels).lower() in BACKGROUND_NAMES) else None
    rgba = np.concatenate([colors[indices], np.full((*indices.shape, 1), 160, np.uint8)], axis=2)
    if transparent is not None:
        rgba[indices == transparent, 3] = 0
    total = indices.size
    classes = [{"index": i, "label": label_for(i, labels), "color": "#%02x%02x%02x" % tuple(colors[i]),
                "fraction": round(int(counts[i]) / total, 6)} for i in np.flatnonzero(counts).tolist()]
    classes.sort(key=lambda c: -c["fraction"])
    return {"mask": Image.fromarray(rgba, "RGBA"), "classes": classes}


def image_output(output: torch.Tensor, geometry: Geometry | None, original: Image.Image | None = None
                 ) -> dict[str, Any]:
    """A (C, H, W) image in [0, 1] → PIL, with letterbox padding removed, resized to the source region's size
    times the network's own scale factor, and the original's alpha re-attached."""
    image = tensor_to_pil(output.detach().float().clamp(0, 1))
    crop = None
    if geometry is not None:
        ratio_x, ratio_y = image.width / geometry.input_size[0], image.height / geometry.input_size[1]
        left, top, right, bottom = geometry.content
        image = image.crop((round(left * ratio_x), round(top * ratio_y), round(right * ratio_x),
                            round(bottom * ratio_y)))
        crop = tuple(round(v) for v in geometry.crop)
        size = (max(1, round((crop[2] - crop[0]) * ratio_x)), max(1, round((crop[3] - crop[1]) * ratio_y)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    if original is not None:
        if crop is not None and crop != (0, 0, *original.size):
            original = original.crop(crop)
        image = reattach_alpha(image, original)
    return {"image": image}
