"""The one way a view reaches the process's Runtime: `app.extensions["ai_service"]`, set by create_app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app

from ai_service.http.security import client_identity
from ai_service.observability.logging import request_id_var
from ai_service.service.upload import Caller

if TYPE_CHECKING:  # http/ never imports the engine or models at run time
    from ai_service.service.runtime import Runtime

#: The key of `app.extensions` under which create_app stores the app's Runtime.
EXTENSION = "ai_service"


def init_app(app: Flask, runtime: Runtime) -> None:
    """Attach the runtime to the app (Flask's extension convention), so views find it through `runtime()`."""
    app.extensions[EXTENSION] = runtime


def runtime() -> Runtime:
    """The current app's Runtime: settings, registry and engine."""
    return current_app.extensions[EXTENSION]


def caller(source: str) -> Caller:
    """Who is asking, for the history: this request's id and its client (API-key fingerprint or address)."""
    return Caller(source, request_id_var.get(), client_identity(runtime().settings.security))
