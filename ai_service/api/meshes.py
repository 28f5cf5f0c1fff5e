"""POST /api/v1/meshes/inspect, /render and /convert: one 3D model in (multipart `file`: GLB, glTF, OBJ, STL, PLY,
or a zip of one with its MTL, textures or buffers), its facts, its views as PNGs, or the model in another format.

Bodies may be up to AI_SERVICE_MESH_MAX_UPLOAD_MB (models outgrow the app-wide image limit); the fields are
validated before the file is read, like /convert's.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from ai_service.api import bp
from ai_service.api.history import query_args
from ai_service.errors import ServiceError
from ai_service.http.bodies import MIB, body_limit_errors, raise_body_limits
from ai_service.http.context import runtime
from ai_service.http.disposition import content_disposition
from ai_service.http.inputs import form_fields, validate
from ai_service.schemas.meshes import MeshConvertQuery, MeshFacts, MeshFileForm, MeshRenderForm, MeshRenderResponse
from ai_service.service import meshes

#: A mesh form: the file and MeshRenderForm's fields, with room for a few mistakes to be reported as such.
MAX_PARTS = 16


def mesh_upload(schema: type[MeshFileForm] | type[MeshRenderForm]) -> tuple[Any, bytes, str]:
    """The validated fields, then the one `file` part (bytes, filename), within the mesh body limit."""
    settings = runtime().settings.meshes
    max_bytes = int(settings.max_upload_mb * MIB)
    if request.mimetype != "multipart/form-data" and (request.mimetype or request.content_length):
        raise ServiceError(
            "unsupported_media_type",
            f"Send multipart/form-data with the model as the part `file`; got {request.mimetype or 'no content type'}.",
        )
    raise_body_limits(max_bytes, MAX_PARTS)
    with body_limit_errors(max_bytes, "AI_SERVICE_MESH_MAX_UPLOAD_MB", MAX_PARTS, "the form's fields"):
        fields = {key: value for key, value in form_fields().items() if key != "file"}
        options = validate(schema, {**fields, "file": b""})
        files = request.files.getlist("file")
    if not files:
        raise ServiceError(
            "missing_file", "Send the model as a multipart/form-data field named 'file'.", {"parameter": "file"}
        )
    if len(files) > 1:
        raise ServiceError("too_many_files", "Send one model per request (a zip for a model and its files).")
    return options, files[0].read(), (files[0].filename or "")[:255]


@bp.post("/meshes/inspect")
def inspect_mesh():
    """Counts, bounds, area, volume, watertightness, materials, textures and units of one model."""
    _, data, filename = mesh_upload(MeshFileForm)
    facts = meshes.inspect(data, filename, runtime().settings.meshes)
    return jsonify(MeshFacts.model_validate(facts).model_dump(mode="json"))


@bp.post("/meshes/render")
def render_mesh():
    """The model's views as PNGs: JSON with data URLs, or one view's PNG as the body (`response=image`)."""
    options, data, filename = mesh_upload(MeshRenderForm)
    if options.response == "image" and meshes.view_count(options.views) != 1:
        problem = "response=image needs exactly one view (e.g. views=front or views=1)"
        raise ServiceError(
            "validation_error",
            f"Invalid request: response: {problem}.",
            [{"loc": ["response"], "msg": problem, "type": "value_error"}],
        )
    outcome = meshes.render(data, filename, options, runtime().settings.meshes)
    if options.response == "image":
        first = outcome.rendered[0]
        response = Response(meshes.png_bytes(first.image), mimetype="image/png")
        stem = filename.rsplit(".", 1)[0] or "model"
        response.headers["Content-Disposition"] = content_disposition("inline", f"{stem}-{first.view.name}.png")
        response.headers["X-Mesh-Scale"] = f"{first.scale:.6f}"
        return response
    return jsonify(MeshRenderResponse.model_validate(outcome.as_dict()).model_dump(mode="json"))


@bp.post("/meshes/convert")
def convert_mesh():
    """The model as GLB, OBJ (zipped with its MTL and textures), STL or PLY, as a download."""
    query = query_args(MeshConvertQuery)
    _, data, filename = mesh_upload(MeshFileForm)
    exported = meshes.convert(data, filename, query.format, runtime().settings.meshes)
    response = Response(exported.data, mimetype=exported.content_type)
    response.headers["Content-Disposition"] = content_disposition("attachment", exported.filename)
    return response
