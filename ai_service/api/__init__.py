"""JSON API under /api/v1; views stay thin and delegate to ai_service.service.predict and the registry."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from ai_service.api import models, predict, openapi, admin, convert  # noqa: E402,F401  (routes register on import)
