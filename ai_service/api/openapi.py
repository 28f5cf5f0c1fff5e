"""GET /api/v1/openapi.json: the document ai_service/http/openapi.py builds for this app and the URL it answers on."""

from __future__ import annotations

import json

from flask import Response

from ai_service.api import bp
from ai_service.http.openapi import openapi_document, request_base


@bp.get("/openapi.json")
def openapi_json():
    """Keys in the document's order, not sorted: generators read a response's first content type as its default."""
    return Response(json.dumps(openapi_document(request_base())), mimetype="application/json")
