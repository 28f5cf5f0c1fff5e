"""GET /status: the device, its memory, and every model's state and footprint, for people (JSON: /api/v1/system)."""

from __future__ import annotations

import time
from typing import Any

from flask import render_template, request

from ai_service.http.context import runtime
from ai_service.service.describe import system_report
from ai_service.web import bp


@bp.app_template_filter("filesize")
def filesize(value: Any) -> str:
    """Bytes for people: 1536 → '1.5 KiB'; missing values → '–'."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@bp.get("/status")
def status():
    """Full page, or only the refreshable part when the page's script asks for it (?fragment=1)."""
    template = "_status_body.html" if request.args.get("fragment") else "status.html"
    return render_template(template, system=system_report(runtime()), now=time.time())
