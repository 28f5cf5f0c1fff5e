"""GET/POST /tools: the image tools (gray, color spaces, transparency, color key, resize) as a web page.

The plain form post works without JavaScript and calls the same service function as POST /api/v1/convert;
static/tools.js upgrades it to call the API directly and offer the result as a download.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import render_template, request

from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.imaging.color import SPACES
from ai_service.imaging.resize import FILTERS, FIT_MODES
from ai_service.service.convert import convert, convert_options
from ai_service.web import bp

CHOICES = {"spaces": [s for s in SPACES if s != "rgb"], "filters": FILTERS, "fits": FIT_MODES}


def form_operations(form: Mapping[str, str]) -> Any:
    """The form's controls as an operations list, in the page's fixed order (or the advanced JSON if given)."""
    advanced = (form.get("operations") or "").strip()
    if advanced:
        return advanced
    ops: list[dict[str, Any]] = []
    if form.get("key_enabled"):
        ops.append(
            {
                "op": "color_key",
                "color": form.get("key_color", "#ffffff"),
                "tolerance": form.get("key_tolerance") or 0,
                "softness": form.get("key_softness") or 0,
            }
        )
    if form.get("flatten_enabled"):
        ops.append({"op": "flatten_alpha", "background": form.get("flatten_background", "#ffffff")})
    if form.get("width") or form.get("height"):
        ops.append(
            {
                "op": "resize",
                "width": form.get("width") or None,
                "height": form.get("height") or None,
                "fit": form.get("fit", "stretch"),
                "filter": form.get("filter", "lanczos"),
                "pad_color": None if form.get("pad_transparent") else form.get("pad_color", "#000000"),
            }
        )
    if form.get("gray_enabled"):
        ops.append({"op": "to_gray", "weights": form.get("gray_weights", "bt601")})
    if form.get("space"):
        ops.append({"op": "colorspace", "space": form["space"]})
    return ops


def tool_fields(form: Mapping[str, str]) -> dict[str, str]:
    """The page's controls as the API's fields: the operations as JSON text, the output choice if given."""
    operations = form_operations(form)
    fields = {"operations": operations if isinstance(operations, str) else json.dumps(operations)}
    fields.update({key: form[key] for key in ("format", "quality") if form.get(key)})
    return fields


def _page(status: int = 200, **context: Any):
    """Render the tools page, echoing the submitted form values."""
    page = render_template("tools.html", settings=runtime().settings, choices=CHOICES, form=request.form, **context)
    return page, status


@bp.get("/tools")
def tools():
    """The empty tools form."""
    return _page()


@bp.post("/tools")
def tools_form():
    """Run the form's operations and show the result with a download link (no JavaScript needed)."""
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename and not upload.content_length:
            raise ServiceError("missing_file", "Choose an image file first.", {"parameter": "file"})
        max_pixels = runtime().settings.limits.max_pixels
        options = convert_options(tool_fields(request.form), max_pixels)
        outcome = convert(upload.read(), upload.filename or "", options, max_pixels)
    except ServiceError as error:
        return _page(error.status, error={"code": error.code, "message": error.message})
    output = {
        "url": outcome.data_url,
        "width": outcome.width,
        "height": outcome.height,
        "mode": outcome.mode,
        "bytes": len(outcome.data),
        "format": outcome.format,
        "download": outcome.filename,
        "operations": outcome.operations,
    }
    return _page(output=output)
