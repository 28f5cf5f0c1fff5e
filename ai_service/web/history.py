"""GET /history (filterable table of recorded predictions) and GET /history/<id> (one entry), server-rendered.

Both read through ai_service.service.history.query, the same calls as GET /api/v1/history, so the page and the JSON
never disagree about what a filter means. Images and exports are links to the JSON API's endpoints.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from flask import current_app, has_request_context, render_template, request, url_for

from ai_service.errors import ServiceError
from ai_service.http.context import EXTENSION, runtime
from ai_service.http.inputs import validate
from ai_service.http.security import require_api_key
from ai_service.schemas import HistoryFilters, HistoryPageQuery
from ai_service.service.describe import list_models
from ai_service.service.history.query import entry, page, utc
from ai_service.web import bp

#: Where the JSON API serves the history (web/ never imports ai_service.api, so the path is named here).
API_PATH = "/api/v1/history"
#: The query arguments the page's form sends; anything else in the URL is ignored.
FORM_FIELDS = ("model", "version", "status", "source", "since", "until", "request_id", "sha256", "job_id")
#: Rows per page of the table.
PAGE_SIZE = 50
#: Export formats GET /api/v1/history/export offers, as (format, button label).
EXPORTS = (("csv", "CSV"), ("jsonl", "JSON lines"), ("parquet", "Parquet"))
#: How far a browser's UTC offset (minutes east, from the page's script) may be; anything else is ignored.
MAX_OFFSET_MIN = 18 * 60


def api_url(path: str = "", **query: Any) -> str:
    """A URL of the history API under this app's root, with the query arguments that are set."""
    args = {key: value for key, value in query.items() if value not in (None, "")}
    return f"{request.script_root}{API_PATH}{path}" + (f"?{urlencode(args)}" if args else "")


@bp.app_context_processor
def history_state() -> dict[str, bool]:
    """Whether this visitor can read the server's history: the upload page's panel then shows its entries."""
    current = current_app.extensions.get(EXTENSION)
    enabled = getattr(current, "history", None) is not None and has_request_context() and readable()
    return {"history_enabled": enabled}


@bp.app_template_filter("utc")
def utc_text(moment: datetime | None) -> str:
    """A stored time for people, in UTC (the page's script rewrites it in the visitor's zone)."""
    return "–" if moment is None else utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("iso")
def iso_text(moment: datetime | None) -> str:
    """The machine-readable form for <time datetime>, always with its offset."""
    return "" if moment is None else utc(moment).isoformat()


def form_values() -> dict[str, str]:
    """The filters as typed (empty fields dropped), to fill the form again and to build the paging links."""
    values = {key: request.args.get(key, "").strip() for key in FORM_FIELDS}
    if values["sha256"]:
        values["sha256"] = values["sha256"].lower()
    return {key: value for key, value in values.items() if value}


def browser_offset() -> timezone | None:
    """The visitor's zone as the page's script reports it (`tz`, minutes east of UTC); None without JavaScript."""
    try:
        minutes = int(request.args.get("tz", ""))
    except ValueError:
        return None
    return timezone(timedelta(minutes=minutes)) if abs(minutes) <= MAX_OFFSET_MIN else None


def in_zone(moment: datetime | None, zone: timezone | None) -> datetime | None:
    """A datetime-local value (no offset) means the visitor's local time when the script said which; else UTC."""
    if moment is None or moment.tzinfo is not None or zone is None:
        return moment
    return moment.replace(tzinfo=zone)


def read_query(values: dict[str, str]) -> HistoryPageQuery:
    """The form as the API's query (same validation, same messages); local times get the visitor's offset."""
    query = validate(HistoryPageQuery, {**values, "limit": PAGE_SIZE, "cursor": request.args.get("cursor") or None})
    zone = browser_offset()
    return query.model_copy(update={"since": in_zone(query.since, zone), "until": in_zone(query.until, zone)})


def export_links(query: HistoryFilters) -> list[tuple[str, str]]:
    """(label, URL) per export format, with the page's filters (times as ISO 8601 with their offset)."""
    filters = {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in query.model_dump(include=set(HistoryFilters.model_fields)).items()
        if value is not None
    }
    return [(label, api_url("/export", format=fmt, **filters)) for fmt, label in EXPORTS]


def model_names(selected: str | None) -> list[str]:
    """Registered model names for the filter; a filtered name that is no longer registered stays selectable."""
    names = sorted({status["name"] for status in list_models(runtime())})
    if selected and selected not in names:
        names.append(selected)
    return names


def readable() -> bool:
    """History holds everyone's uploads: with API keys configured it is shown only to a request with a valid key
    (the same rule as GET /api/v1/history; a reverse proxy may add the header for its signed-in users)."""
    try:
        require_api_key(runtime().settings.security)
    except ServiceError:
        return False
    return True


def locked_page():
    """The 401 page for a visitor without a key, saying where the history can be read instead."""
    page = render_template("history.html", enabled=True, locked=True, values={}, models=[], items=[])
    return page, 401, {"WWW-Authenticate": 'Bearer realm="ai_service"'}


@bp.get("/history")
def history_page():
    """The table; without history a 200 page that says how to turn it on (the nav links here either way)."""
    values = form_values()
    context: dict[str, Any] = {
        "enabled": runtime().history is not None,
        "values": values,
        "tz": request.args.get("tz", ""),
        "models": model_names(values.get("model")),
        "items": [],
        "older_url": None,
        "newest_url": None,
        "exports": [],
        "error": None,
    }
    if not context["enabled"]:
        return render_template("history.html", **context)
    if not readable():
        return locked_page()
    status = 200
    try:
        query = read_query(values)
        found = page(runtime().history, query)
    except ServiceError as error:  # a bad filter (422) or an unreachable database (503): the form stays
        context["error"], status = error, error.status
    else:
        here = {**values, "tz": context["tz"]} if context["tz"] else values
        older = found["next_cursor"]
        context.update(
            items=found["items"],
            exports=export_links(query),
            older_url=url_for("web.history_page", **here, cursor=older) if older else None,
            newest_url=url_for("web.history_page", **here) if query.cursor else None,
        )
    return render_template("history.html", **context), status


@bp.get("/history/<entry_id>")
def history_entry(entry_id: str):
    """One recorded prediction: its result, images (when kept), timings and the links to related rows."""
    current = runtime()
    if current.history is None:
        return render_template("history.html", enabled=False, values={}, models=[], items=[]), 404
    if not readable():
        return locked_page()
    row = entry(current.history, entry_id)
    images = {
        "input": api_url(f"/{row['id']}/input") if row["input_stored"] else None,
        "output": api_url(f"/{row['id']}/output") if row["output_sha256"] else None,
    }
    result = row["result"] if isinstance(row["result"], dict) else {}
    return render_template(
        "history_entry.html",
        row=row,
        result=result,
        images=images,
        output_kind="mask" if "mask" in result and "image" not in result else "image",
        json_url=api_url(f"/{row['id']}"),
    )
