"""GET /jobs: submit a folder or an archive as a bulk job, follow it, download its results; recent jobs listed.

Uploading a folder and live progress need the page's script (it talks to /api/v1/jobs); without JavaScript the page
still lists the recent jobs with their download links, read through the same service call as GET /api/v1/jobs.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.service.jobs import listing
from ai_service.web import bp
from ai_service.web.history import readable
from ai_service.web.pages import model_choices

#: Where the JSON API serves jobs (web/ never imports ai_service.api, so the path is named here).
API_PATH = "/api/v1/jobs"
#: Recent jobs the page lists.
RECENT = 20
#: Result formats GET /api/v1/jobs/<id>/results offers, as (format, label).
FORMATS = (("jsonl", "JSON lines"), ("csv", "CSV"), ("parquet", "Parquet"))
MIB = 1024 * 1024


def api_base() -> str:
    """The jobs API under this app's root."""
    return f"{request.script_root}{API_PATH}"


@bp.get("/jobs")
def jobs_page():
    """The form and the recent jobs; without jobs a 200 page that says how to turn them on."""
    current = runtime()
    settings = current.settings
    context: dict[str, Any] = {
        "enabled": current.jobs is not None,
        "locked": False,
        "models": [],
        "jobs": [],
        "error": None,
        "api": api_base(),
        "formats": FORMATS,
        "settings": settings,
        "max_bytes": int(settings.jobs.max_upload_mb * MIB),
    }
    if not context["enabled"]:
        return render_template("jobs.html", **context)
    if not readable():
        context["locked"] = True
        return render_template("jobs.html", **context), 401, {"WWW-Authenticate": 'Bearer realm="ai_service"'}
    context["models"] = model_choices()
    status = 200
    try:
        context["jobs"] = listing(current, limit=RECENT)
    except ServiceError as error:  # an unreachable database: the form stays, the list says why
        context["error"], status = error, error.status
    return render_template("jobs.html", **context), status
