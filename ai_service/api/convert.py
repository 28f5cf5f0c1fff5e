"""POST /api/v1/convert: an image plus a list of operations -> the converted image (or JSON with a data URL).

Multipart fields: `file` (required), `operations` (JSON list, e.g. [{"op": "resize", "width": 224}]),
`format` (png/jpeg/webp), `quality` (1-100), `response` (image/json; `Accept: application/json` also
selects JSON), `download` (1 for an attachment). Every bad value is a 4xx naming the parameter.
"""
from __future__ import annotations

import base64
import re
from pathlib import PurePath
from typing import Any

from flask import Response, current_app, jsonify, request

from ai_service.api import bp
from ai_service.errors import ServiceError
from ai_service.imaging.io import decode_image, encode_image, mime_type, sniff_format
from ai_service.imaging.ops import OperationError, Result, apply_operations, parse_operations, parse_output


def max_pixels() -> int:
    """The configured decode limit (decompression bombs), also used as the output budget."""
    return int(current_app.config["SETTINGS"].max_pixels)


def invalid(error: OperationError) -> ServiceError:
    """An OperationError as the API's error shape, naming the parameter."""
    return ServiceError("invalid_parameter", error.message, {"parameter": error.parameter})


def uploaded_file() -> tuple[bytes, str]:
    """The single `file` part (bytes, filename) with clear errors for the usual mistakes."""
    files = request.files.getlist("file")
    if not files:
        other = sorted(request.files)
        hint = f" (got file field(s) {other})" if other else ""
        raise ServiceError("missing_file", f"Send the image as a multipart/form-data field named 'file'{hint}.",
                       {"parameter": "file"})
    if len(files) > 1:
        raise ServiceError("too_many_files", "/convert takes exactly one file.", {"parameter": "file"})
    return files[0].read(), (files[0].filename or "")[:255]


def wants_json() -> bool:
    """`response=json`, or an Accept header that prefers JSON to images."""
    choice = (request.values.get("response") or "").lower()
    if choice not in ("", "image", "json"):
        raise ServiceError("invalid_parameter", f"response: must be 'image' or 'json'; got {choice[:40]!r}",
                       {"parameter": "response"})
    if choice:
        return choice == "json"
    return request.accept_mimetypes.best_match(["image/png", "application/json"]) == "application/json"


def output_name(filename: str, fmt: str) -> str:
    """A safe download name: the upload's stem plus the output extension."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePath(filename or "image").stem)[:100] or "image"
    return f"{stem}-converted.{'jpg' if fmt == 'jpeg' else fmt}"


@bp.post("/convert")
def convert_endpoint():
    """Decode (magic-number sniffing, limits), run the operations, encode."""
    try:
        ops = parse_operations(request.values.get("operations"), max_pixels=max_pixels())
        fmt, quality = parse_output(request.values.get("format"), request.values.get("quality"))
    except OperationError as error:
        raise invalid(error) from None
    as_json = wants_json()
    data, filename = uploaded_file()
    source_format = sniff_format(data)
    image = decode_image(data, max_pixels=max_pixels(), **decode_hints(ops))
    try:
        result = apply_operations(image, ops, max_pixels=max_pixels())
    except OperationError as error:
        raise invalid(error) from None
    body = encode_image(result.image, fmt, quality=quality)
    name = output_name(filename, fmt)
    if as_json:
        return jsonify(describe(result, body, fmt, source_format, image.info.get("source_size", image.size), name))
    response = Response(body, mimetype=mime_type(fmt))
    disposition = "attachment" if request.values.get("download") in ("1", "true", "yes") else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{name}"'
    response.headers["X-Image-Width"] = str(result.image.width)
    response.headers["X-Image-Height"] = str(result.image.height)
    response.headers["X-Image-Mode"] = result.image.mode
    return response


def decode_hints(ops: list[dict[str, Any]]) -> dict[str, tuple[int, int] | None]:
    """When the first operation is a two-sided resize, decode no larger than needed.

    JPEGs then use reduced (DCT-domain) decoding and SVGs are rasterised at the target (exactly, for stretch;
    covering it with the aspect kept, otherwise), which is sharper and cheaper than rendering big and shrinking.
    """
    if not ops or ops[0]["op"] != "resize" or not (ops[0]["width"] and ops[0]["height"]):
        return {"target_size": None, "svg_size": None}
    size = (ops[0]["width"], ops[0]["height"])
    return {"target_size": size, "svg_size": size if ops[0]["fit"] == "stretch" else None}


def describe(result: Result, body: bytes, fmt: str, source_format: str, source_size: tuple[int, int],
             name: str) -> dict[str, Any]:
    """The JSON answer: output facts, the data URL, the operations as applied and any resize geometry."""
    out: dict[str, Any] = {
        "format": fmt,
        "content_type": mime_type(fmt),
        "width": result.image.width,
        "height": result.image.height,
        "mode": result.image.mode,
        "bytes": len(body),
        "filename": name,
        "source": {"format": source_format, "width": source_size[0], "height": source_size[1]},
        "operations": result.applied,
        "data_url": f"data:{mime_type(fmt)};base64," + base64.b64encode(body).decode("ascii"),
    }
    if result.geometry is not None:
        out["geometry"] = result.geometry
    return out
