"""HTML pages (upload form and result, tools, history, jobs, dashboard, status, API docs, the built manual),
server-rendered; they work without JavaScript (the Jobs page says what it needs it for).

May import Flask, ai_service.http, .service, .schemas, .errors and .imaging; never ai_service.api (NAV names its
endpoints only as strings), models or engine. Only the app factory (ai_service/__init__.py) imports this package.
"""

from flask import Blueprint

bp = Blueprint("web", __name__)
NAV = (
    ("web.index", "Predict"),
    ("web.tools", "Tools"),
    ("web.history_page", "History"),
    ("web.jobs_page", "Jobs"),
    ("web.dashboard", "Dashboard"),
    ("web.status", "Status"),
    ("web.docs", "API docs"),
    ("api.health", "Health (JSON)"),
)


@bp.app_context_processor
def nav_links() -> dict:
    """Links for the header: only pages that exist in this build of the app."""
    from flask import current_app

    return {"nav_links": [(endpoint, label) for endpoint, label in NAV if endpoint in current_app.view_functions]}


from ai_service.web import dashboard, docs, guide, history, jobs, pages, status, tools  # noqa: E402,F401  (routes register on import)
