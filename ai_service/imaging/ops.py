"""The image operations behind /api/v1/convert and the Tools page, applied in order.

They arrive validated (ai_service.schemas.convert, as dicts with defaults filled in); only the pixel budget of a
one-sided resize is checked here, since it depends on the image's aspect ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from PIL import Image

from ai_service.imaging.alpha import color_key, flatten_alpha
from ai_service.imaging.color import color_image
from ai_service.imaging.convert import to_gray
from ai_service.imaging.geometry import Geometry
from ai_service.imaging.resize import fit_image

MAX_SIDE: Final = 8192


class OperationError(ValueError):
    """A bad parameter; `parameter` names it (e.g. 'operations[1].width') so the client knows what to fix."""

    def __init__(self, parameter: str, message: str) -> None:
        """Keep the parameter path and prefix the message with it."""
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = f"{parameter}: {message}"


@dataclass
class Result:
    """The converted image plus what the operations reported (e.g. resize geometry)."""

    image: Image.Image
    applied: list[dict[str, Any]] = field(default_factory=list)
    geometry: dict[str, Any] | None = None


def apply_operations(im: Image.Image, ops: list[dict[str, Any]], *, max_pixels: int) -> Result:
    """Run validated operations in order; resize is bounded by max_pixels and its geometry refers to the original.

    When the image was decoded at reduced scale (info["source_size"] differs from its size), the geometry of
    a first resize is expressed against the full-size original, so boxes map back to the uploaded pixels.
    """
    result = Result(im)
    source = tuple(im.info.get("source_size") or im.size)
    for i, op in enumerate(ops):
        params = {k: v for k, v in op.items() if k != "op"}
        if op["op"] == "resize":
            before = result.image
            result.image, geo = _resize(before, params, f"operations[{i}]", max_pixels)
            if i == 0:
                geo = geo.rebase(source)
            result.geometry = geo.as_convert_json()
        else:
            result.image = APPLY[op["op"]](result.image, params)
        result.applied.append(op)
    return result


def _resize(im: Image.Image, p: dict[str, Any], where: str, max_pixels: int) -> tuple[Image.Image, Geometry]:
    """Fill a missing side from the aspect ratio, check the budget, then fit."""
    w, h = p["width"], p["height"]
    if w is None:
        w = max(1, round(im.width * h / im.height))
    if h is None:
        h = max(1, round(im.height * w / im.width))
    if w > MAX_SIDE or h > MAX_SIDE or w * h > max_pixels:
        raise OperationError(
            f"{where}.width", f"the result would be {w}x{h}, over the {max_pixels:,}-pixel / {MAX_SIDE}px limit"
        )
    return fit_image(im, (w, h), p["fit"], p["filter"], pad_color=p["pad_color"])


APPLY: Final[dict[str, Callable[[Image.Image, dict[str, Any]], Image.Image]]] = {
    "to_gray": lambda im, p: to_gray(im, p["weights"], keep_alpha=p["keep_alpha"]),
    "colorspace": lambda im, p: color_image(im, p["space"]),
    "flatten_alpha": lambda im, p: flatten_alpha(im, p["background"]),
    "color_key": lambda im, p: color_key(im, p["color"], p["tolerance"], p["softness"], p["metric"]),
}
