"""How an image was fitted to a model's input, and mapping model outputs back onto the image the user sees.

The geometry dict (JSON-ready, returned to API clients; models build it from resize.fit_image's FitGeometry)
has: original_size [w, h] of the upright image, input_size [w, h] fed to the model, fit, resample, scale
[sx, sy] (model-input pixels per original pixel), padding [left, top, right, bottom] in model-input pixels,
crop [x0, y0, x1, y1] of the original that was used.
"""
from __future__ import annotations

from typing import Any, Final, Mapping, Sequence

from PIL import Image

MAPPING_KEYS: Final = frozenset({"original_size", "input_size", "scale", "padding", "crop"})


def point_to_original(x: float, y: float, geometry: Mapping[str, Any]) -> tuple[float, float]:
    """A point in model-input pixels → the same point in original-image pixels."""
    sx, sy = geometry["scale"]
    left, top = geometry["padding"][:2]
    x0, y0 = geometry.get("crop_box", geometry["crop"])[:2]  # resize.FitGeometry's unrounded crop when present
    return x0 + (x - left) / sx, y0 + (y - top) / sy


def box_to_original(box: Sequence[float], geometry: Mapping[str, Any]) -> list[float]:
    """[x0, y0, x1, y1] in model-input pixels → original pixels, clipped to the image, rounded to 0.01 px."""
    width, height = geometry["original_size"]
    ax, ay = point_to_original(box[0], box[1], geometry)
    bx, by = point_to_original(box[2], box[3], geometry)
    return [round(min(max(v, 0.0), limit), 2) for v, limit in ((ax, width), (ay, height), (bx, width), (by, height))]


def keypoint_to_original(point: Sequence[float], geometry: Mapping[str, Any]) -> list[float]:
    """[x, y, ...extra] in model-input pixels → original pixels; extra values (score, visibility) are kept."""
    x, y = point_to_original(point[0], point[1], geometry)
    return [round(x, 2), round(y, 2), *point[2:]]


def mask_to_original(mask: Image.Image, geometry: Mapping[str, Any]) -> Image.Image:
    """A mask over the model input → a mask the size of the original image (outside the crop stays 0)."""
    left, top, right, bottom = geometry["padding"]
    in_w, in_h = geometry["input_size"]
    if mask.size != (in_w, in_h):
        mask = mask.resize((in_w, in_h), Image.Resampling.NEAREST)
    inner = mask.crop((left, top, in_w - right, in_h - bottom))
    x0, y0, x1, y1 = (round(v) for v in geometry["crop"])
    fitted = inner.resize((x1 - x0, y1 - y0), Image.Resampling.NEAREST)
    size = tuple(geometry["original_size"])
    if (x0, y0, x1, y1) == (0, 0, *size):
        return fitted
    canvas = Image.new(mask.mode, size, 0)
    canvas.paste(fitted, (x0, y0))
    return canvas


def result_to_original(result: dict[str, Any], geometry: Mapping[str, Any] | None) -> dict[str, Any]:
    """One model result with every box, keypoint and mask mapped from model-input to original pixels."""
    if not geometry or not MAPPING_KEYS <= set(geometry):
        return result
    mapped = dict(result)
    if isinstance(result.get("detections"), list):
        mapped["detections"] = [_detection_to_original(item, geometry) for item in result["detections"]]
    if isinstance(result.get("keypoints"), list):
        mapped["keypoints"] = [keypoint_to_original(point, geometry) for point in result["keypoints"]]
    if isinstance(result.get("mask"), Image.Image):
        mapped["mask"] = mask_to_original(result["mask"], geometry)
    return mapped


def _detection_to_original(detection: Mapping[str, Any], geometry: Mapping[str, Any]) -> dict[str, Any]:
    """One detection's box, keypoints and instance mask mapped back."""
    item = dict(detection)
    if "box" in item:
        item["box"] = box_to_original(item["box"], geometry)
    if isinstance(item.get("keypoints"), list):
        item["keypoints"] = [keypoint_to_original(point, geometry) for point in item["keypoints"]]
    if isinstance(item.get("mask"), Image.Image):
        item["mask"] = mask_to_original(item["mask"], geometry)
    return item


def to_source_size(geometry: Mapping[str, Any], source_size: tuple[int, int]) -> dict[str, Any]:
    """Re-base a geometry from the decoded size onto the full source size (JPEG decoders may decode reduced)."""
    decoded = tuple(geometry["original_size"])
    if decoded == tuple(source_size):
        return dict(geometry)
    fx, fy = source_size[0] / decoded[0], source_size[1] / decoded[1]
    rebased: dict[str, Any] = {**geometry, "original_size": list(source_size), "decoded_size": list(decoded)}
    if "scale" in geometry:
        rebased["scale"] = [round(geometry["scale"][0] / fx, 8), round(geometry["scale"][1] / fy, 8)]
    for key in ("crop", "crop_box"):  # crop_box, scale_x/y, src_size: resize.FitGeometry's names, kept in step
        if key in geometry:
            x0, y0, x1, y1 = geometry[key]
            rebased[key] = [round(x0 * fx, 2), round(y0 * fy, 2), round(x1 * fx, 2), round(y1 * fy, 2)]
    if "scale_x" in geometry and "scale_y" in geometry:
        rebased["scale_x"], rebased["scale_y"] = geometry["scale_x"] / fx, geometry["scale_y"] / fy
    if "src_size" in geometry:
        rebased["src_size"] = list(source_size)
    return rebased
