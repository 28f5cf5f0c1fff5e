"""GET/POST /tools: the image tools (grey, colour spaces, transparency, colour key, resize) as a web page.

The plain form post works without JavaScript and runs the same validated pipeline as POST /api/v1/convert;
static/tools.js upgrades it to call the API directly and offer the result as a download.
"""
from __future__ import annotations

import base64
from typing import Any, Mapping

from flask import current_app, render_template, request

from ai_service.errors import ServiceError
from ai_service.imaging.color import SPACES
from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.io import decode_image, encode_image, mime_type
from ai_service.imaging.ops import OperationError, apply_operations, parse_operations, parse_output
from ai_service.imaging.resize import FILTERS, FIT_MODES
from ai_service.web import bp

CHOICES = {"spaces": [s for s in SPACES if s != "rgb"], "filters": FILTERS, "fits": FIT_MODES}


def form_operations(form: Mapping[str, str]) -> Any:
    """The form's controls as an operations list, in the page's fixed order (or the advanced JSON if given)."""
    advanced = (form.get("operations") or "").strip()
    if advanced:
        return advanced
    ops: list[dict[str, Any]] = []
    if form.get("key_enabled"):
        ops.append({"op": "color_key", "color": form.get("key_color", "#ffffff"),
                    "tolerance": form.get("key_tolerance") or 0, "softness": form.get("key_softness") or 0})
    if form.get("flatten_enabled"):
        ops.append({"op": "flatten_alpha", "background": form.get("flatten_background", "#ffffff")})
    if form.get("width") or form.get("height"):
        ops.append({"op": "resize", "width": form.get("width") or None, "height": form.get("height") or None,
                    "fit": form.get("fit", "stretch"), "filter": form.get("filter", "lanczos"),
                    "pad_color": None if form.get("pad_transparent") else form.get("pad_color", "#000000")})
    if form.get("gray_enabled"):
        ops.append({"op": "to_gray", "weights": form.get("gray_weights", "bt601")})
    if form.get("space"):
        ops.append({"op": "colorspace", "space": form["space"]})
    return ops


def _page(status: int = 200, **context: Any):
    """Render the tools page, echoing the submitted form values."""
    settings = current_app.config["SETTINGS"]
    return render_template("tools.html", settings=settings, choices=CHOICES, form=request.form, **context), status


@bp.get("/tools")
def tools():
    """The empty tools form."""
    return _page()


@bp.post("/tools")
def tools_form():
    """Run the form's operations and show the result with a download link (no JavaScript needed)."""
    limit = int(current_app.config["SETTINGS"].max_pixels)
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename and not upload.content_length:
            raise ServiceError("missing_file", "Choose an image file first.", {"parameter": "file"})
        ops = parse_operations(form_operations(request.form), max_pixels=limit)
        fmt, quality = parse_output(request.form.get("format"), request.form.get("quality"))
        image = decode_image(upload.read(), max_pixels=limit)
        result = apply_operations(image, ops, max_pixels=limit)
        body = encode_image(result.image, fmt, quality=quality)
    except OperationError as error:
        return _page(422, error={"code": "invalid_parameter", "message": error.message})
    except (ServiceError, ImageDecodeError) as error:
        return _page(error.status, error={"code": error.code, "message": error.message})
    url = f"data:{mime_type(fmt)};base64," + base64.b64encode(body).decode("ascii")
    stem = (upload.filename or "image").rsplit(".", 1)[0][:80] or "image"
    output = {"url": url, "width": result.image.width, "height": result.image.height, "mode": result.image.mode,
              "bytes": len(body), "format": fmt, "download": f"{stem}-converted.{'jpg' if fmt == 'jpeg' else fmt}",
              "operations": result.applied}
    return _page(output=output)
