"""GET /api/v1/openapi.json: the document ai_service/http/openapi.py builds for this app and the URL it answers on."""

from __future__ import annotations

from flask import jsonify

from ai_service.api import bp
from ai_service.http.openapi import openapi_document, request_base


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi_document(request_base()))
