"""How an image was fitted to a target size (a model input, a resize), and mapping results back onto it.

One type, Geometry, made by resize.plan_fit / fit_image: exact (unrounded) numbers for mapping points,
boxes and masks back; `as_json()` gives the fields the predict API documents and rounds only there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

Size = tuple[int, int]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Geometry:
    """A fit of the `original_size` image into `input_size` pixels: which region, at which scale, where placed."""

    #: stretch, letterbox or crop.
    fit: str
    #: [w, h] of the image that was fitted (after rebase(): the full-size source).
    original_size: Size
    #: [w, h] of the fitted result (the model input).
    input_size: Size
    #: (sx, sy): result pixels per original pixel.
    scale: tuple[float, float]
    #: (x0, y0, x1, y1): the region of the original that was used (fractional for crop).
    crop: Box
    #: (left, top, right, bottom): where that region landed in the result (letterbox leaves padding around it).
    content: tuple[int, int, int, int]
    #: The resampling filter, when known (reported to API clients).
    resample: str | None = None
    #: [w, h] actually decoded when it differs from original_size (reduced-size JPEG decoding).
    decoded_size: Size | None = None

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) padding in result pixels (letterbox)."""
        left, top, right, bottom = self.content
        return left, top, self.input_size[0] - right, self.input_size[1] - bottom

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """A point in result pixels → the same point in original pixels (continuous, pixel edges at integers)."""
        return (
            self.crop[0] + (x - self.content[0]) / self.scale[0],
            self.crop[1] + (y - self.content[1]) / self.scale[1],
        )

    def to_input(self, x: float, y: float) -> tuple[float, float]:
        """A point in original pixels → result pixels (the inverse of to_original)."""
        return (
            self.content[0] + (x - self.crop[0]) * self.scale[0],
            self.content[1] + (y - self.crop[1]) * self.scale[1],
        )

    def box_to_original(self, box: Sequence[float]) -> list[float]:
        """[x0, y0, x1, y1] in result pixels → original pixels, clipped to the image, rounded to 0.01 px."""
        width, height = self.original_size
        ax, ay = self.to_original(box[0], box[1])
        bx, by = self.to_original(box[2], box[3])
        corners = ((ax, width), (ay, height), (bx, width), (by, height))
        return [round(min(max(v, 0.0), limit), 2) for v, limit in corners]

    def keypoint_to_original(self, point: Sequence[float]) -> list[float]:
        """[x, y, ...extra] in result pixels → original pixels; extra values (score, visibility) are kept."""
        x, y = self.to_original(point[0], point[1])
        return [round(x, 2), round(y, 2), *point[2:]]

    def mask_to_original(self, mask: Image.Image) -> Image.Image:
        """A mask over the result → a mask the size of the original (outside the crop stays 0)."""
        left, top, right, bottom = self.content
        if mask.size != self.input_size:
            mask = mask.resize(self.input_size, Image.Resampling.NEAREST)
        x0, y0, x1, y1 = (round(v) for v in self.crop)
        fitted = mask.crop((left, top, right, bottom)).resize((x1 - x0, y1 - y0), Image.Resampling.NEAREST)
        if (x0, y0, x1, y1) == (0, 0, *self.original_size):
            return fitted
        canvas = Image.new(mask.mode, self.original_size, 0)
        canvas.paste(fitted, (x0, y0))
        return canvas

    def result_to_original(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """One model result with every box, keypoint and mask mapped from result to original pixels."""
        mapped = dict(result)
        if isinstance(result.get("detections"), list):
            mapped["detections"] = [self._detection_to_original(item) for item in result["detections"]]
        if isinstance(result.get("keypoints"), list):
            mapped["keypoints"] = [self.keypoint_to_original(point) for point in result["keypoints"]]
        if isinstance(result.get("mask"), Image.Image):
            mapped["mask"] = self.mask_to_original(result["mask"])
        return mapped

    def rebase(self, source_size: Sequence[int], *, api_precision: bool = False) -> Geometry:
        """The same fit described against the full-size source (a JPEG may have been decoded reduced).

        `api_precision` rounds the scale to 8 and the crop to 2 decimals, the precision the predict API
        has always reported and mapped boxes with (so its numbers stay the same to the last digit).
        """
        source = (int(source_size[0]), int(source_size[1]))
        if source == self.original_size:
            return self
        fx, fy = source[0] / self.original_size[0], source[1] / self.original_size[1]
        scale = (self.scale[0] / fx, self.scale[1] / fy)
        crop = tuple(v * f for v, f in zip(self.crop, (fx, fy, fx, fy)))
        if api_precision:
            scale, crop = (round(scale[0], 8), round(scale[1], 8)), tuple(round(v, 2) for v in crop)
        return replace(
            self, original_size=source, scale=scale, crop=crop, decoded_size=self.decoded_size or self.original_size
        )

    def as_json(self) -> dict[str, Any]:
        """The predict API's documented fields (schemas.Geometry), without the EXIF ones locate() adds."""
        rebased = self.decoded_size is not None
        data: dict[str, Any] = {
            "original_size": list(self.original_size),
            "input_size": list(self.input_size),
            "fit": self.fit,
            "resample": self.resample,
            "padding": list(self.padding),
            "scale": [round(s, 8) for s in self.scale] if rebased else list(self.scale),
            "crop": [round(v, 2) for v in self.crop] if rebased else [round(v) for v in self.crop],
        }
        if rebased:
            data["decoded_size"] = list(self.decoded_size)
        return data

    def as_convert_json(self) -> dict[str, Any]:
        """POST /api/v1/convert's `geometry`, in the field names that endpoint has always answered with."""
        return {
            "mode": self.fit,
            "src_size": list(self.original_size),
            "dst_size": list(self.input_size),
            "scale_x": self.scale[0],
            "scale_y": self.scale[1],
            "crop_box": list(self.crop),
            "content_box": list(self.content),
            "padding": list(self.padding),
        }

    def _detection_to_original(self, detection: Mapping[str, Any]) -> dict[str, Any]:
        item = dict(detection)
        if "box" in item:
            item["box"] = self.box_to_original(item["box"])
        if isinstance(item.get("keypoints"), list):
            item["keypoints"] = [self.keypoint_to_original(point) for point in item["keypoints"]]
        if isinstance(item.get("mask"), Image.Image):
            item["mask"] = self.mask_to_original(item["mask"])
        return item


def source_json(decoded: Sequence[int], source: Sequence[int]) -> dict[str, Any]:
    """The geometry of a result whose model did no fitting: the upright source size, and the decoded one if smaller."""
    data: dict[str, Any] = {"original_size": list(source)}
    if tuple(decoded) != tuple(source):
        data["decoded_size"] = list(decoded)
    return data
