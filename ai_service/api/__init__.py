"""JSON API under /api/v1: views only translate HTTP (parse the request, call ai_service.service, build the response).

May import Flask, ai_service.http, .service, .schemas, .errors, .imaging and .observability; never ai_service.web,
models or engine. Only the app factory (ai_service/__init__.py) imports this package.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# routes register on import
from ai_service.api import (  # noqa: E402,F401
    admin,
    convert,
    history,
    jobs,
    meshes,
    models,
    openapi,
    predict,
    predict_image,
    psd,
    stats,
    system,
)
