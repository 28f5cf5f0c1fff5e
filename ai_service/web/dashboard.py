"""GET /dashboard: traffic, latency, errors, drift, inputs and jobs over a chosen range, as charts and tables.

The numbers come from ai_service.service.stats, the same calls as GET /api/v1/stats/…, so the page and the JSON
agree; access follows the History page (an API key when the server has keys).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import render_template, request

from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.http.inputs import validate
from ai_service.schemas.stats import BUCKET_SECONDS, StatsDriftQuery
from ai_service.service.stats import content, jobs, usage
from ai_service.service.stats.window import ratio
from ai_service.web import bp
from ai_service.web import charts as c
from ai_service.web.history import browser_offset, in_zone, model_names, readable

#: The ranges the form offers, ending now; since/until fields, when filled, replace them.
RANGES = {
    "1h": ("Last hour", timedelta(hours=1)),
    "6h": ("Last 6 hours", timedelta(hours=6)),
    "24h": ("Last 24 hours", timedelta(days=1)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
DEFAULT_RANGE = "24h"
BUCKET_LABELS = {
    "auto": "Automatic",
    "1m": "1 minute",
    "5m": "5 minutes",
    "15m": "15 minutes",
    "1h": "1 hour",
    "6h": "6 hours",
    "1d": "1 day",
    "7d": "1 week",
}
#: Where the JSON API serves the same numbers (web/ never imports ai_service.api).
API_PATH = "/api/v1/stats"


@bp.app_template_filter("duration")
def duration(seconds: int) -> str:
    """A bucket width for people: 3600 → '1 hour'."""
    names = {width: BUCKET_LABELS[key] for key, width in BUCKET_SECONDS.items()}
    return names.get(seconds) or (f"{seconds // 86_400} days" if seconds % 86_400 == 0 else f"{seconds} s")


def form_values() -> dict[str, Any]:
    """The form as sent: range preset, optional since/until (local times), bucket, models."""
    values: dict[str, Any] = {key: request.args.get(key, "").strip() for key in ("range", "since", "until", "bucket")}
    values["range"] = values["range"] if values["range"] in RANGES else DEFAULT_RANGE
    values["bucket"] = values["bucket"] if values["bucket"] in BUCKET_LABELS else "auto"
    values["model"] = [name for name in request.args.getlist("model") if name]
    return values


def read_query(values: dict[str, Any], now: datetime) -> StatsDriftQuery:
    """The form as the API's query: since/until when typed (in the visitor's zone), else the preset range."""
    fields: dict[str, Any] = {"bucket": values["bucket"], "model": ",".join(values["model"]) or None}
    for key in ("since", "until"):
        if values[key]:
            fields[key] = values[key]
    query = validate(StatsDriftQuery, fields)
    zone = browser_offset()
    until = in_zone(query.until, zone) or now
    since = in_zone(query.since, zone) or until - RANGES[values["range"]][1]
    return query.model_copy(update={"since": since, "until": until})


def build(query: StatsDriftQuery) -> dict[str, Any]:
    """Every aggregate of the page, and its charts."""
    history = runtime().history
    traffic, latency = usage.traffic(history, query), usage.latency(history, query)
    errors, drift = usage.errors(history, query), content.drift(history, query)
    inputs, job_stats = content.inputs(history, query), jobs.jobs(history, query)
    finished = sum(sum(values) for values in job_stats["finished"].values())
    return {
        "window": traffic["window"],
        "baseline": drift["baseline"],
        "totals": {
            "images": traffic["images"],
            "requests": traffic["requests"],
            "error_rate": c.percent_cell(ratio(sum(errors["errors"]), errors["total"])).text,
            "jobs": finished,
        },
        "seen_models": [item["model"] for item in traffic["series"]],
        "latency_models": latency["models"],
        "drift": drift["models"],
        "charts": {
            "traffic": c.traffic_chart(traffic),
            "latency": c.latency_chart(latency),
            "error_rate": c.error_rate_chart(errors),
            "error_codes": c.error_codes_chart(errors),
            "sizes": c.category_chart("sizes", "Images by longer side (px)", "Size", inputs["sizes"]),
            "modes": c.category_chart("modes", "Images by color mode", "Mode", inputs["modes"]),
            "formats": c.category_chart("formats", "Images by file type (name)", "Format", inputs["formats"]),
            "jobs": c.jobs_chart(job_stats),
            "throughput": c.throughput_chart(job_stats),
        },
        "drift_charts": [
            (c.label_chart(model, index), c.score_chart(model, index)) for index, model in enumerate(drift["models"])
        ],
    }


@bp.get("/dashboard")
def dashboard():
    """The page; without history a 200 page that says how to turn it on, with keys and none given a 401."""
    values = form_values()
    models = model_names(None)
    context: dict[str, Any] = {
        "enabled": runtime().history is not None,
        "values": values,
        "tz": request.args.get("tz", ""),
        "models": models + [name for name in values["model"] if name not in models],
        "ranges": {key: label for key, (label, _) in RANGES.items()},
        "buckets": BUCKET_LABELS,
        "api_path": request.script_root + API_PATH,
        "stats": None,
        "error": None,
    }
    if not context["enabled"]:
        return render_template("dashboard.html", **context)
    if not readable():
        page = render_template("dashboard.html", **context, locked=True)
        return page, 401, {"WWW-Authenticate": 'Bearer realm="ai_service"'}
    status = 200
    try:
        context["stats"] = build(read_query(values, datetime.now(UTC)))
        context["models"] = sorted(set(context["models"]) | set(context["stats"]["seen_models"]))  # retired ones too
    except ServiceError as error:  # a bad range (422) or an unreachable database (503): the form stays
        context["error"], status = error, error.status
    return render_template("dashboard.html", **context), status
