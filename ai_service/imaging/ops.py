"""Validated image operations (the /api/v1/convert pipeline): parse untrusted parameters, then apply them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from PIL import Image

from ai_service.imaging.alpha import color_key, flatten_alpha, parse_color
from ai_service.imaging.color import SPACES, color_image
from ai_service.imaging.convert import to_gray
from ai_service.imaging.geometry import Geometry
from ai_service.imaging.resize import FILTERS, FIT_MODES, fit_image

MAX_OPERATIONS: Final = 20
MAX_SIDE: Final = 8192
OUTPUT_FORMATS: Final = ("png", "jpeg", "webp")
OP_NAMES: Final = ("to_gray", "colorspace", "flatten_alpha", "color_key", "resize")


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


def parse_operations(raw: Any, *, max_pixels: int) -> list[dict[str, Any]]:
    """JSON text or a list of {"op": ...} objects -> normalized, fully validated operations."""
    if raw in (None, ""):
        return []
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except (ValueError, TypeError) as exc:
            raise OperationError("operations", f"must be a JSON list of objects ({exc.__class__.__name__})") from None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise OperationError("operations", 'must be a JSON list of objects like [{"op": "to_gray"}]')
    if len(raw) > MAX_OPERATIONS:
        raise OperationError("operations", f"at most {MAX_OPERATIONS} operations, got {len(raw)}")
    return [parse_operation(item, f"operations[{i}]", max_pixels) for i, item in enumerate(raw)]


def parse_operation(item: Any, where: str, max_pixels: int) -> dict[str, Any]:
    """One operation object -> normalized dict with defaults filled in."""
    if not isinstance(item, dict):
        raise OperationError(where, "must be an object with an 'op' field")
    name = item.get("op")
    if name not in PARSERS:
        raise OperationError(f"{where}.op", f"must be one of {', '.join(OP_NAMES)}; got {str(name)[:40]!r}")
    params = {k: v for k, v in item.items() if k != "op"}
    known = KNOWN_PARAMS[name]
    unknown = sorted(set(params) - known)
    if unknown:
        raise OperationError(
            f"{where}.{unknown[0]}", f"is not a parameter of {name} (allowed: {', '.join(sorted(known)) or 'none'})"
        )
    return {"op": name, **PARSERS[name](params, where, max_pixels)}


def _path(where: str, key: str) -> str:
    """'operations[2]' + 'width' -> 'operations[2].width'; top-level fields keep their bare name."""
    return f"{where}.{key}" if where else key


def _choice(params: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    """One of a fixed set of strings."""
    value = params.get(key, default)
    if value not in choices:
        raise OperationError(_path(where, key), f"must be one of {', '.join(choices)}; got {str(value)[:40]!r}")
    return str(value)


def _int(params: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int, where: str) -> int | None:
    """A whole number within [lo, hi] (numeric strings and integral floats accepted)."""
    value = params.get(key, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise OperationError(_path(where, key), "must be a whole number")
    try:
        number = int(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise OperationError(_path(where, key), f"must be a whole number; got {str(value)[:40]!r}") from None
    if not lo <= number <= hi:
        raise OperationError(_path(where, key), f"must be between {lo} and {hi}; got {number}")
    return number


def _bool(params: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    """true/false, also from form strings like "on" or "0"."""
    value = params.get(key, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off", ""):
        return False
    raise OperationError(_path(where, key), f"must be true or false; got {str(value)[:40]!r}")


def _color(params: Mapping[str, Any], key: str, default: Any, where: str, allow_none: bool = False) -> Any:
    """A color normalized to "#rrggbb" (or None for transparent where allowed)."""
    value = params.get(key, default)
    if value is None or (allow_none and str(value).lower() in ("transparent", "none", "")):
        if allow_none:
            return None
        raise OperationError(_path(where, key), "is required")
    try:
        r, g, b = parse_color(value)
    except (ValueError, TypeError):
        raise OperationError(
            _path(where, key), f"must be a color like '#ff8800' or [255, 136, 0]; got {str(value)[:40]!r}"
        ) from None
    return f"#{r:02x}{g:02x}{b:02x}"


def _parse_gray(p: Mapping[str, Any], where: str, _: int) -> dict[str, Any]:
    """to_gray: weights (bt601/bt709), keep_alpha."""
    return {
        "weights": _choice(p, "weights", ("bt601", "bt709"), "bt601", where),
        "keep_alpha": _bool(p, "keep_alpha", True, where),
    }


def _parse_colorspace(p: Mapping[str, Any], where: str, _: int) -> dict[str, Any]:
    """colorspace: space."""
    return {"space": _choice(p, "space", tuple(s for s in SPACES if s != "rgb"), "hsv", where)}


def _parse_flatten(p: Mapping[str, Any], where: str, _: int) -> dict[str, Any]:
    """flatten_alpha: background color."""
    return {"background": _color(p, "background", "#ffffff", where)}


def _parse_color_key(p: Mapping[str, Any], where: str, _: int) -> dict[str, Any]:
    """color_key: color, tolerance, softness, metric."""
    return {
        "color": _color(p, "color", "#ffffff", where),
        "tolerance": _int(p, "tolerance", 0, 0, 441, where),
        "softness": _int(p, "softness", 0, 0, 441, where),
        "metric": _choice(p, "metric", ("max", "euclidean"), "max", where),
    }


def _parse_resize(p: Mapping[str, Any], where: str, max_pixels: int) -> dict[str, Any]:
    """resize: width and/or height, fit, filter, pad_color (null = transparent)."""
    width = _int(p, "width", None, 1, MAX_SIDE, where)
    height = _int(p, "height", None, 1, MAX_SIDE, where)
    if width is None and height is None:
        raise OperationError(f"{where}.width", "give width, height or both")
    if width and height and width * height > max_pixels:
        raise OperationError(f"{where}.width", f"width x height must be at most {max_pixels:,} pixels")
    return {
        "width": width,
        "height": height,
        "fit": _choice(p, "fit", FIT_MODES, "stretch", where),
        "filter": _choice(p, "filter", FILTERS, "lanczos", where),
        "pad_color": _color(p, "pad_color", "#000000", where, allow_none=True),
    }


PARSERS: Final[dict[str, Callable[[Mapping[str, Any], str, int], dict[str, Any]]]] = {
    "to_gray": _parse_gray,
    "colorspace": _parse_colorspace,
    "flatten_alpha": _parse_flatten,
    "color_key": _parse_color_key,
    "resize": _parse_resize,
}
KNOWN_PARAMS: Final = {
    "to_gray": {"weights", "keep_alpha"},
    "colorspace": {"space"},
    "flatten_alpha": {"background"},
    "color_key": {"color", "tolerance", "softness", "metric"},
    "resize": {"width", "height", "fit", "filter", "pad_color"},
}


def parse_output(fmt: Any, quality: Any) -> tuple[str, int]:
    """Output format (png/jpeg/webp; 'jpg' accepted) and quality 1-100 (default 90)."""
    name = str(fmt or "png").lower().strip()
    name = "jpeg" if name == "jpg" else name
    if name not in OUTPUT_FORMATS:
        raise OperationError("format", f"must be one of {', '.join(OUTPUT_FORMATS)}; got {str(fmt)[:40]!r}")
    q = _int({"quality": quality}, "quality", 90, 1, 100, "")
    assert q is not None
    return name, q


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
