"""POST /api/v1/psd/layers: a Photoshop document's layer tree, each layer's pixels as a PNG on request."""

from __future__ import annotations

from flask import jsonify

from ai_service.api import bp
from ai_service.api.convert import form_fields, uploaded_file
from ai_service.http.context import runtime
from ai_service.http.inputs import validate
from ai_service.schemas.psd import PsdLayersOptions, PsdLayersResponse
from ai_service.service.psd import describe_layers


@bp.post("/psd/layers")
def psd_layers_endpoint():
    """Fields first (`layer`, `png`), then the file: sniffed, size-checked, listed."""
    options = validate(PsdLayersOptions, form_fields())
    data, _ = uploaded_file()
    body = describe_layers(data, options, runtime().settings.limits.max_pixels)
    return jsonify(PsdLayersResponse.model_validate(body).model_dump(mode="json", exclude_none=True))
