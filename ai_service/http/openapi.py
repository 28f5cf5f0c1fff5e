"""The OpenAPI 3.1 document, generated from the pydantic schemas, ERRORS and the app's routes.

The HTTP contract described once, for both readers: GET /api/v1/openapi.json serves it, the /docs page renders it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ai_service import __version__
from ai_service import schemas as s
from ai_service.errors import ERRORS, ServiceError
from ai_service.http.context import runtime
from ai_service.schemas import meshes as ms
from ai_service.schemas import stats as st

if TYPE_CHECKING:  # http/ never imports the engine or models at run time
    from ai_service.service.runtime import Runtime

#: A real handwritten 7 (24×24 grayscale PNG, 367 bytes): the digits model answers "7" with score 1.0.
SAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAAAAADFHGIkAAABNklEQVR42nWSwWqDQBCG/xpN0AVrk2wOTYt7C+gb9P1vufRiwDYpNrEVsrDVibt"
    "gc+mhirYhcxr4+IYZ/rlBW3EUR3H026/Xa1i4UjYAgHlMCGHlpeOMfd9vSLbAW/BQhOqgGPMeHv2mOnYGF0KIMn8OggC36A3LduhNp9uPMxxSUpF"
    "uwc1oTGa/33/CYaSOikxvlGUpj9JhASm/N+oCWhtqwLjwTCZ1t+4Jp/P5u2ng8dBoKU0H6ro9i3GRyYEBYDafua4bR1wbrSYDMF+tpndTzhfG6GI"
    "IZqun5f0SgNbaHwJr5IwsENF2t92pIbDHtgU65Gmaqq9LI98kmwRAn4eWmdSgPMlpkAcAI9/ZAtVhU/0DWmZcg/KkG43+Zpdei/pvtAA8Hk6ql+J"
    "0ARgXZVn2xtUv+QHpT5k/0g0a4gAAAABJRU5ErkJggg=="
)
SAMPLE_FILE = "seven.png"
CACHED_BASES = 8  # the Host header is client-controlled: never cache without bound
IMAGE_TYPES = ("image/png", "image/webp", "image/jpeg")
#: What /predict may answer with besides JSON: the image encodings and SVG drawings (`output_format=svg`).
DRAWING_TYPES = (*IMAGE_TYPES, "image/svg+xml")
#: What an example input may be served as (the formats ai_service.models.declarative accepts for examples).
EXAMPLE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp")
#: What a stored history image may be served as: any format the service reads, by its magic numbers.
STORED_TYPES = (
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/vnd.microsoft.icon",
    "image/vnd.adobe.photoshop",
    "image/svg+xml",
    "application/octet-stream",
)


#: The header a 202 names the created job with.
LOCATION = {"description": "Where to follow the job (GET).", "required": True, "schema": {"type": "string"}}
#: Listed first for every file or image answer: generated clients (openapi-python-client) read it as bytes; the
#: Content-Type the server sends is one of the specific types listed after it.
BINARY = {"schema": {"type": "string", "format": "binary"}}
#: The optional request header every operation honours (and answers with, see components/headers). Being optional,
#: it also makes openapi-python-client 0.29.1 import `Unset`, which a module for a body with two content types uses
#: without importing otherwise (its issue #1451); no operation has two body types any more (predict/predictJson,
#: createJob/createJobJson), but the header is real and stays documented.
REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Your id for this request (1-128 of A-Z a-z 0-9 . _ : -); echoed back and in every log line.",
    "schema": {"type": "string"},
}
#: The multipart parts that carry files, and what they may be.
FILE_PARTS = {
    "file": "image/*, model/*, application/zip, application/octet-stream",
    "archive": "application/zip, application/x-tar, application/gzip, application/x-bzip2, application/x-xz, "
    "application/octet-stream",
}


#: What the predict operations (multipart and JSON) and the job submissions answer with besides success.
PREDICT_ERRORS = (400, 404, 413, 415, 422, 503, 504)
JOB_ERRORS = (400, 404, 413, 415, 422, 503)


@dataclass(frozen=True)
class Operation:
    """One documented endpoint: what it takes, what it returns, and curl lines that work as pasted."""

    method: str
    rule: str
    operation_id: str
    summary: str
    response: type[BaseModel] | None
    tag: str = "models"
    description: str = ""
    errors: tuple[int, ...] = ()
    request: dict[str, type[BaseModel]] = field(default_factory=dict)
    examples: tuple[tuple[str, str], ...] = ()
    security: str | None = None  # "admin": needs the admin token; "key": needs an API key when keys are configured
    image_response: bool = False  # 200 may also be the encoded image (png/webp/jpeg)
    query: type[BaseModel] | None = None  # the query-string parameters, one per field of this model
    success: int = 200  # the success status (204: no body)
    media: tuple[str, ...] = ()  # the success body's content types when it is not JSON (files, images)
    image_default: bool = False  # with image_response: the image is the default answer, so bytes are listed first
    image_types: tuple[str, ...] = IMAGE_TYPES  # with image_response: the image content types


def predict_examples(model: str, image_model: str | None) -> tuple[tuple[str, str], ...]:
    """curl lines for POST /api/v1/predict: sample file, multipart, batch, image output."""
    lines = [
        ("Save the sample image the examples use", f"echo '{SAMPLE_PNG_BASE64}' | base64 -d > {SAMPLE_FILE}"),
        ("One image, multipart", f"curl -s -F file=@{SAMPLE_FILE} -F model={model} -F top_k=3 {{base}}/api/v1/predict"),
        (
            "A batch: repeat the file part",
            f"curl -s -F file=@{SAMPLE_FILE} -F file=@{SAMPLE_FILE} -F model={model} {{base}}/api/v1/predict",
        ),
        (
            "Choose how the image is fitted",
            f"curl -s -F file=@{SAMPLE_FILE} -F model={model} -F fit=letterbox "
            "-F resample=bicubic {base}/api/v1/predict",
        ),
    ]
    if image_model:
        lines.append(
            (
                "Image output as the response body",
                f"curl -s -F file=@{SAMPLE_FILE} -F model={image_model} "
                "-F return=image -F output_format=webp -o output.webp {base}/api/v1/predict",
            )
        )
    return tuple(lines)


def predict_json_examples(model: str) -> tuple[tuple[str, str], ...]:
    """curl lines for POST /api/v1/predict/json: one image, a batch."""
    image = f"data:image/png;base64,{SAMPLE_PNG_BASE64}"
    one = json.dumps({"model": model, "top_k": 3, "image": image})
    many = json.dumps({"model": model, "images": [image, SAMPLE_PNG_BASE64]})
    json_type = "-H 'Content-Type: application/json'"
    return (
        ("JSON with a base64 data: URL", f"curl -s {json_type} -d '{one}' {{base}}/api/v1/predict/json"),
        (
            "A batch: `images`, plain base64 or data: URLs",
            f"curl -s {json_type} -d '{many}' {{base}}/api/v1/predict/json",
        ),
    )


def convert_examples() -> tuple[tuple[str, str], ...]:
    """curl lines for POST /api/v1/convert."""
    ops = '[{"op": "resize", "width": 48, "fit": "letterbox"}, {"op": "to_gray"}]'
    return (
        (
            "Resize and gray, answer with the image",
            f"curl -s -F file=@{SAMPLE_FILE} -F 'operations={ops}' "
            "-F format=webp -o converted.webp {base}/api/v1/convert",
        ),
        (
            "The same, answered as JSON with a data URL",
            f"curl -s -F file=@{SAMPLE_FILE} -F 'operations={ops}' -F response=json {{base}}/api/v1/convert",
        ),
    )


def history_examples(model: str) -> tuple[tuple[str, str], ...]:
    """curl lines for GET /api/v1/history and its export (the download saves under the server's file name)."""
    saved = """-w '{"file": "%{filename_effective}", "status": %{http_code}}\\n'"""
    return (
        ("The newest five predictions", "curl -s '{base}/api/v1/history?limit=5'"),
        (
            "Filtered: one model, successes, since a date",
            f"curl -s '{{base}}/api/v1/history?model={model}&status=ok&since=2025-01-01T00:00:00Z'",
        ),
        ("Export as CSV", f"curl -s -OJ {saved} '{{base}}/api/v1/history/export?format=csv&model={model}'"),
        ("Export as Parquet", f"curl -s -OJ {saved} '{{base}}/api/v1/history/export?format=parquet'"),
    )


def history_operations(model: str) -> list[Operation]:
    """The prediction history: list, export, one entry, its stored images, deletion."""
    stored = (
        "The image is there when `AI_SERVICE_HISTORY_IMAGES` kept it (`all`: inputs and outputs, `outputs`); "
        "otherwise, and after the entry was deleted, 404 `not_found`. Content-addressed, so cacheable."
    )
    off = " 404 `history_disabled` when the server records no history."
    return [
        Operation(
            "GET",
            "/api/v1/history",
            "listHistory",
            "Recorded predictions, newest first, filtered and paged",
            s.HistoryPage,
            "history",
            errors=(401, 404, 422, 503),
            security="key",
            query=s.HistoryPageQuery,
            examples=history_examples(model)[:2],
            description=(
                "One entry per input image of every predict call (API, pages, jobs, CLI). Filters combine; pass "
                "`next_cursor` back as `cursor` for the next page (null: the end). Bad values are 422 "
                "`invalid_parameter`." + off
            ),
        ),
        Operation(
            "GET",
            "/api/v1/history/export",
            "exportHistory",
            "Every matching prediction as CSV, JSON lines or Parquet",
            None,
            "history",
            errors=(401, 404, 422, 503),
            security="key",
            query=s.HistoryExportQuery,
            media=("text/csv", "application/x-ndjson", "application/vnd.apache.parquet"),
            examples=history_examples(model)[2:],
            description=(
                "Oldest first, up to the moment the export started, streamed as it is read (any size). One column "
                "per field of HistoryEntry in its order; `result` and `timing_ms` as JSON text; times in UTC (ISO "
                "8601 in CSV and JSON lines, timestamp[us, UTC] in Parquet)." + off
            ),
        ),
        Operation(
            "GET",
            "/api/v1/history/<string(length=32):id>",
            "getHistoryEntry",
            "One recorded prediction",
            s.HistoryEntry,
            "history",
            errors=(401, 404, 503),
            security="key",
            description="`history_id` of a predict result names its entry." + off,
        ),
        Operation(
            "DELETE",
            "/api/v1/history/<string(length=32):id>",
            "deleteHistoryEntry",
            "Forget one recorded prediction",
            None,
            "history",
            errors=(401, 403, 404, 503),
            security="admin",
            success=204,
            description=(
                "Needs `Authorization: Bearer <AI_SERVICE_ADMIN_TOKEN>`. Stored images that no other entry uses go "
                "with the next retention run." + off
            ),
        ),
        Operation(
            "GET",
            "/api/v1/history/<string(length=32):id>/input",
            "getHistoryInput",
            "The uploaded image of a recorded prediction",
            None,
            "history",
            errors=(401, 404, 503),
            security="key",
            media=STORED_TYPES,
            description=stored + off,
        ),
        Operation(
            "GET",
            "/api/v1/history/<string(length=32):id>/output",
            "getHistoryOutput",
            "The output image (PNG) of a recorded prediction",
            None,
            "history",
            errors=(401, 404, 503),
            security="key",
            media=STORED_TYPES,
            description=stored + off,
        ),
    ]


def jobs_examples(model: str) -> tuple[tuple[str, str], ...]:
    """curl lines for POST/GET /api/v1/jobs (the sample image saved by the predict examples)."""
    body = json.dumps({"model": model, "images": [SAMPLE_PNG_BASE64] * 2, "filenames": ["a.png", "b.png"]})
    return (
        (
            "A job of several images: repeat the file part",
            f"curl -s -F file=@{SAMPLE_FILE} -F file=@{SAMPLE_FILE} -F model={model} {{base}}/api/v1/jobs",
        ),
        (
            "A job from an archive of a folder",
            f"tar czf images.tar.gz {SAMPLE_FILE} && curl -s -F archive=@images.tar.gz -F model={model} "
            "{base}/api/v1/jobs",
        ),
        (
            "A job of base64 images, JSON",
            f"curl -s -H 'Content-Type: application/json' -d '{body}' {{base}}/api/v1/jobs/json",
        ),
        ("The newest jobs", "curl -s '{base}/api/v1/jobs?limit=5'"),
    )


def jobs_operations(model: str) -> list[Operation]:
    """Bulk jobs: submit, list, follow, cancel, results, output images."""
    off = " 503 `jobs_disabled` when the server takes no jobs."
    return [
        Operation(
            "POST",
            "/api/v1/jobs",
            "createJob",
            "Run a model over an archive or many images in the background (multipart)",
            s.JobCreated,
            "jobs",
            errors=JOB_ERRORS,
            security="key",
            success=202,
            request={"multipart/form-data": s.JobForm},
            examples=jobs_examples(model)[:2],
            description=(
                "Send a zip or tar archive as the multipart part `archive`, or images as `file` parts (a folder's "
                "relative paths as their filenames); plus `model` and the per-image options of /predict. The body "
                "may be up to `AI_SERVICE_JOBS_MAX_UPLOAD_MB`. An unknown model (404), an unsafe archive "
                "(traversal, links, devices, nested archives: 400 `unsafe_archive`) or one over a limit (413 "
                "`archive_too_large`, naming the limit) is refused before anything is stored. A member that is not "
                "an image becomes that item's error; the job goes on. Answers 202 with the job's id and a "
                "`Location` to poll; results are history rows with the job's `job_id`. JSON bodies (base64 "
                "`images`) belong to `POST /api/v1/jobs/json`; this path still accepts them, as it always has." + off
            ),
        ),
        Operation(
            "POST",
            "/api/v1/jobs/json",
            "createJobJson",
            "Run a model over many base64 images in the background (JSON)",
            s.JobCreated,
            "jobs",
            errors=JOB_ERRORS,
            security="key",
            success=202,
            request={"application/json": s.JobJSON},
            examples=jobs_examples(model)[2:3],
            description=(
                "`POST /api/v1/jobs` with a JSON body: `images` as base64 or data: URLs (a bad one becomes that "
                "item's error), optional `filenames` naming them, plus `model` and the per-image options of "
                "/predict. Answers 202 with the job's id and a `Location` to poll." + off
            ),
        ),
        Operation(
            "GET",
            "/api/v1/jobs",
            "listJobs",
            "Jobs, newest first",
            s.JobPage,
            "jobs",
            errors=(401, 422, 503),
            security="key",
            query=s.JobsQuery,
            examples=jobs_examples(model)[3:],
            description="Optionally only the jobs in one state." + off,
        ),
        Operation(
            "GET",
            "/api/v1/jobs/<string(length=32):job_id>",
            "getJob",
            "A job's state, counts, throughput and ETA",
            s.JobStatus,
            "jobs",
            errors=(401, 404, 503),
            security="key",
            description="Poll it until `status` is succeeded, failed or cancelled." + off,
        ),
        Operation(
            "DELETE",
            "/api/v1/jobs/<string(length=32):job_id>",
            "cancelJob",
            "Cancel a job; images already done keep their results",
            s.JobStatus,
            "jobs",
            errors=(401, 404, 409, 503),
            security="key",
            description="A queued or running job becomes `cancelled`; a finished one answers 409 `invalid_state`."
            + off,
        ),
        Operation(
            "GET",
            "/api/v1/jobs/<string(length=32):job_id>/results",
            "getJobResults",
            "One row per input, in input order, as JSON lines, CSV or Parquet",
            None,
            "jobs",
            errors=(401, 404, 422, 503),
            security="key",
            query=s.JobResultsQuery,
            media=("application/x-ndjson", "text/csv", "application/vnd.apache.parquet"),
            description=(
                "Streamed; each row has the input's `path` (archive member or file name) and the history row's "
                "columns (status, error_code, top1_label, top1_score, result, ...). Rows of images not yet run are "
                "missing while the job runs." + off
            ),
        ),
        Operation(
            "GET",
            "/api/v1/jobs/<string(length=32):job_id>/outputs.zip",
            "getJobOutputs",
            "The output images of a job as a zip, named after their inputs",
            None,
            "jobs",
            errors=(401, 404, 503),
            security="key",
            media=("application/zip",),
            description="Image-to-image outputs and masks, each under its input's path with the output format's "
            "extension; streamed." + off,
        ),
    ]


def mesh_operations() -> list[Operation]:
    """3D models: inspect, render, convert (a mesh sent to /predict runs as its rendered views)."""
    formats = "GLB, glTF with embedded buffers, OBJ, STL (ASCII or binary), PLY, or a zip of a model with its files"
    safety = (
        " Limits are checked from the file's own headers before anything is built (413 `mesh_too_large`); a glTF "
        "buffer or image outside the upload is 422 `unsafe_mesh` (never opened), an OBJ's outside MTL or texture "
        "is ignored and listed; damaged or truncated data is 422 `invalid_mesh`; not a 3D model: 415 "
        "`unsupported_format`."
    )
    sample = "curl -s -F file=@cube.obj"
    # The unit cube as an OBJ (eight `v` lines, six quads), base64 like the sample PNG.
    cube = (
        "diAwIDAgMAp2IDEgMCAwCnYgMSAxIDAKdiAwIDEgMAp2IDAgMCAxCnYgMSAwIDEKdiAxIDEgMQp2IDAg"
        "MSAxCmYgMSA0IDMgMgpmIDUgNiA3IDgKZiAxIDIgNiA1CmYgMiAzIDcgNgpmIDMgNCA4IDcKZiA0IDEgNSA4Cg=="
    )
    saved = """-OJ -w '{"file": "%{filename_effective}", "status": %{http_code}}\\n'"""
    return [
        Operation(
            "POST",
            "/api/v1/meshes/inspect",
            "inspectMesh",
            "Facts of a 3D model: counts, bounds, area, volume, materials",
            ms.MeshFacts,
            "meshes",
            errors=(400, 413, 415, 422, 503),
            security="key",
            request={"multipart/form-data": ms.MeshFileForm},
            examples=(("Inspect a model", f"{sample} {{base}}/api/v1/meshes/inspect"),),
            description=f"Send one model as `file` ({formats}). The scene is flattened with its transforms; "
            "`volume` is given when the surface is watertight." + safety,
        ),
        Operation(
            "POST",
            "/api/v1/meshes/render",
            "renderMesh",
            "Views of a 3D model as PNGs (a turntable or named views)",
            ms.MeshRenderResponse,
            "meshes",
            errors=(400, 413, 415, 422, 503),
            security="key",
            request={"multipart/form-data": ms.MeshRenderForm},
            image_response=True,
            examples=(
                ("A turntable of 8 views, as JSON", f"{sample} -F views=8 -F size=256 {{base}}/api/v1/meshes/render"),
                (
                    "The iso view as a PNG",
                    f"{sample} -F views=iso -F response=image -o iso.png {{base}}/api/v1/meshes/render",
                ),
            ),
            description="Orthographic, lit and shaded views rendered on the CPU, on a transparent background "
            "unless `background` names a color; every view shares one `scale` (pixels per model unit). JSON "
            "carries each view as a PNG data URL; `response=image` answers with one view's PNG." + safety,
        ),
        Operation(
            "POST",
            "/api/v1/meshes/convert",
            "convertMesh",
            "A 3D model in another format: GLB, OBJ (zipped), STL or PLY",
            None,
            "meshes",
            errors=(400, 413, 415, 422, 503),
            security="key",
            query=ms.MeshConvertQuery,
            request={"multipart/form-data": ms.MeshFileForm},
            media=("model/gltf-binary", "application/zip", "model/stl", "application/x-ply"),
            examples=(  # first on /docs (paths in order): it saves the cube every mesh example sends
                ("Save the unit cube the examples use (an OBJ)", f"echo '{cube}' | base64 -d > cube.obj"),
                (
                    "OBJ to GLB, saved under the server's name",
                    f"{sample} {saved} '{{base}}/api/v1/meshes/convert?format=glb'",
                ),
            ),
            description="GLB keeps the scene, its materials and textures; OBJ comes back as a zip with its MTL and "
            "textures; STL and PLY hold the flattened geometry (PLY with vertex colors)." + safety,
        ),
    ]


def stats_operations(model: str) -> list[Operation]:
    """The dashboard's aggregates: one per chart family, all over the same query (range, models, bucket)."""
    common = (
        " Computed by the database over the range [since, until) (default: the last 24 h), cut into `bucket`-wide "
        "buckets aligned to UTC (`buckets` lists their starts; every series has one value per bucket). Repeat "
        "`model` for several models. 422 `invalid_parameter` for a bad range or more than 1000 buckets; 404 "
        "`history_disabled` when the server records no history."
    )
    stats = [
        ("traffic", "getStatsTraffic", "Images, requests and errors over time, per model", st.StatsTraffic, ""),
        (
            "latency",
            "getStatsLatency",
            "Latency percentiles (p50, p95, p99) over time and per model",
            st.StatsLatency,
            "Nearest-rank percentiles of each image's recorded total time (ms), computed by the database.",
        ),
        ("errors", "getStatsErrors", "Error rate over time and by error code", st.StatsErrors, ""),
        (
            "drift",
            "getStatsDrift",
            "Top-1 labels and score histogram per model, beside a baseline period",
            st.StatsDrift,
            "The baseline defaults to the period of the same length just before `since`; a shift in the score "
            "histogram is the first sign of drift.",
        ),
        ("inputs", "getStatsInputs", "Input sizes, modes and file formats", st.StatsInputs, ""),
        ("jobs", "getStatsJobs", "Bulk jobs submitted and finished over time, and their throughput", st.StatsJobs, ""),
    ]
    return [
        Operation(
            "GET",
            f"/api/v1/stats/{name}",
            operation_id,
            summary,
            response,
            "stats",
            errors=(401, 404, 422, 503),
            security="key",
            query=st.StatsDriftQuery if name == "drift" else st.StatsQuery,
            description=(extra + common).strip(),
            examples=(
                (
                    f"Daily traffic of {model} since a date",
                    f"curl -s '{{base}}/api/v1/stats/{name}?model={model}&since=2026-01-01T00:00:00Z&bucket=1d'",
                ),
            )
            if name == "traffic"
            else ((summary, f"curl -s '{{base}}/api/v1/stats/{name}'"),),
        )
        for name, operation_id, summary, response, extra in stats
    ]


def operations(model: str, image_model: str | None, example: str | None = None) -> list[Operation]:
    """Every endpoint of the API (those this app does not route are left out of its document); `example` is one of
    `model`'s example files, for the curl line that fetches it."""
    get = "curl -s {base}"
    return [
        Operation(
            "POST",
            "/api/v1/predict",
            "predict",
            "Run a model on one or more images (multipart)",
            s.PredictResponse,
            "predict",
            errors=PREDICT_ERRORS,
            security="key",
            image_response=True,
            image_types=DRAWING_TYPES,
            request={"multipart/form-data": s.PredictForm},
            examples=predict_examples(model, image_model),
            description=(
                "Send images as multipart `file` parts. The answer always has one entry in `results` per "
                "input, in order. A request with one input fails as a whole when that input is bad; in a "
                "batch (several `file` parts) a bad input gets an error entry and the others still run. With "
                "`return=image` the body is the encoded output image instead of JSON. JSON bodies (base64 "
                "images) belong to `POST /api/v1/predict/json`; this path still accepts them, as it always has."
            ),
        ),
        Operation(
            "POST",
            "/api/v1/predict/json",
            "predictJson",
            "Run a model on one or more base64 images (JSON)",
            s.PredictResponse,
            "predict",
            errors=PREDICT_ERRORS,
            security="key",
            image_response=True,
            image_types=DRAWING_TYPES,
            request={"application/json": s.PredictJSON},
            examples=predict_json_examples(model),
            description=(
                "`POST /api/v1/predict` with a JSON body: `image` (one) or `images` (a batch) as base64 or "
                "base64 data: URLs (remote URLs are refused, never fetched), plus the same options. Same answers: "
                "one entry in `results` per input; in a batch a bad input gets an error entry and the others "
                "still run; with `return=image` the body is the encoded output image."
            ),
        ),
        Operation(
            "POST",
            "/api/v1/predict/image",
            "predictImage",
            "Run an image-to-image model on one image; the body is the output image",
            None,
            "predict",
            errors=(400, 404, 413, 415, 422, 503, 504),
            security="key",
            request={"multipart/form-data": s.PredictImageForm},
            media=DRAWING_TYPES,
            description=(
                "`POST /api/v1/predict` with `return=image`, as an operation of its own: one `file`, the same "
                "options but `return`, and the encoded output image (`output_format`) as the whole body."
            ),
        ),
        Operation(
            "POST",
            "/api/v1/convert",
            "convert",
            "Convert an image: resize, color, alpha; no model",
            s.ConvertResponse,
            "images",
            errors=(400, 413, 415, 422),
            security="key",
            request={"multipart/form-data": s.ConvertForm},
            image_response=True,
            image_default=True,
            description=(
                "Decode one image safely (format sniffed from its bytes, pixel limit), apply the listed "
                "operations in order and answer with the encoded image, or with JSON (`response=json`). "
                "`operations` is JSON text whose `contentSchema` is the union of operations, told apart by `op`. "
                "The fields are checked before the file, like /predict's: an unknown field or parameter, or a bad "
                "value, is `422 validation_error` with `details` listing each (`loc` e.g. "
                '["operations", 1, "tolerance"]).'
            ),
            examples=convert_examples(),
        ),
        Operation(
            "POST",
            "/api/v1/psd/layers",
            "psdLayers",
            "The layers of a Photoshop document, optionally with each layer's pixels",
            s.PsdLayersResponse,
            "images",
            errors=(400, 413, 415, 422),
            security="key",
            request={"multipart/form-data": s.PsdLayersForm},
            description=(
                "Send one PSD/PSB as `file`. The answer lists every layer and group (each group followed by its "
                "contents, the bottom of each stack first, as stored) with its index path, name path, kind, "
                "visibility, opacity, blend mode and box in canvas pixels. `png=true` adds each layer's pixels as a "
                "PNG data URL (clipped to the canvas); `layer` lists one layer or group only. The index path or "
                "name path is what `layer` of /predict and /convert takes. Not a PSD: 415 `unsupported_format`; "
                "an unknown `layer`: 422 `layer_not_found`; PNGs beyond 4x the pixel limit: 413 `image_too_large`."
            ),
        ),
        Operation(
            "GET",
            "/api/v1/models",
            "listModels",
            "Registered models, their metadata and state",
            s.ModelsResponse,
            examples=(("List models", get + "/api/v1/models"),),
        ),
        Operation(
            "GET",
            "/api/v1/models/<ref>",
            "getModel",
            "One model (name = newest version, or name@version)",
            s.ModelDetail,
            errors=(404,),
            examples=(("One model", get + f"/api/v1/models/{model}"),),
        ),
        Operation(
            "GET",
            "/api/v1/models/<ref>/examples/<example>",
            "getModelExample",
            "One of a model's example input images",
            None,
            errors=(404, 503),
            media=EXAMPLE_TYPES,
            examples=(
                ("Save an example image", f"curl -s -o {example} {{base}}/api/v1/models/{model}/examples/{example}"),
            )
            if example
            else (),
            description=(
                "The files `examples` lists for the model (GET /api/v1/models), typed by their content, with an "
                "`ETag` (send `If-None-Match` for a 304) and an hour of caching. 404 `not_found` for a name the "
                "model does not list."
            ),
        ),
        Operation(
            "POST",
            "/api/v1/models/<ref>/<action>",
            "manageModel",
            "Load, unload or offload a model",
            s.ModelActionResponse,
            errors=(401, 403, 404, 409, 503),
            security="admin",
            description=(
                "`load` puts the weights on the device (or brings offloaded ones back), `unload` frees "
                "them, `offload` moves them to CPU RAM for a fast reload. Needs "
                "`Authorization: Bearer <AI_SERVICE_ADMIN_TOKEN>`; without a configured token the "
                "endpoints answer 403 `admin_disabled`."
            ),
            examples=(
                (
                    "Load a model now",
                    'curl -s -X POST -H "Authorization: Bearer $AI_SERVICE_ADMIN_TOKEN" '
                    f"{{base}}/api/v1/models/{model}/load",
                ),
                (
                    "Free its memory",
                    'curl -s -X POST -H "Authorization: Bearer $AI_SERVICE_ADMIN_TOKEN" '
                    f"{{base}}/api/v1/models/{model}/unload",
                ),
            ),
        ),
        Operation(
            "GET",
            "/api/v1/system",
            "system",
            "Devices, memory, process RSS and every model's state",
            s.SystemResponse,
            "service",
            examples=(("System report", get + "/api/v1/system"),),
        ),
        Operation(
            "GET",
            "/api/v1/health",
            "health",
            "Liveness, version, device and loaded models",
            s.HealthResponse,
            "service",
            examples=(("Health", get + "/api/v1/health"),),
        ),
        Operation(
            "GET",
            "/api/v1/openapi.json",
            "openapi",
            "This OpenAPI 3.1 document",
            None,
            "service",
            examples=(("The document", get + "/api/v1/openapi.json"),),
        ),
        *history_operations(model),
        *jobs_operations(model),
        *stats_operations(model),
        *mesh_operations(),
    ]


def flask_rule_to_path(rule: str) -> tuple[str, list[str]]:
    """/models/<name>/load → (/models/{name}/load, ["name"])."""
    names = [match.split(":")[-1] for match in re.findall(r"<([^>]+)>", rule)]
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule), names


def routed(app: Flask) -> set[tuple[str, str]]:
    """(method, rule) of every API route the app serves."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in (rule.methods or ()) - {"HEAD", "OPTIONS"}
    }


def example_models(current: Runtime) -> tuple[str, str | None, str | None]:
    """The model names the examples use: the default model, an image-to-image model if one is served, and the default
    model's first example file if it has one."""
    image_model = next(
        (
            m["name"]
            for m in current.registry.statuses()
            if m.get("task") == "image-to-image" and m.get("state") != "failed"
        ),
        None,
    )
    default = current.settings.models.default_model
    try:
        example = next(iter(current.resolve(default).info.examples), None)
    except ServiceError:
        example = None
    return default, image_model, example.name if example else None


def build_document(app: Flask, current: Runtime, base: str) -> dict[str, Any]:
    """The whole OpenAPI document for this app and its runtime; curl examples point at `base`."""
    served = routed(app)
    api_keys = bool(current.settings.security.api_keys)
    ops = [op for op in operations(*example_models(current)) if (op.method, op.rule) in served]
    models: list[tuple[type[BaseModel], str]] = [(s.ErrorResponse, "serialization")]
    for op in ops:
        models += [(body, "validation") for body in op.request.values()]
        models += [(op.response, "serialization")] if op.response else []
    refs, defs = models_json_schema(list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        path, params = flask_rule_to_path(op.rule)
        paths.setdefault(path, {})[op.method.lower()] = operation_object(op, params, refs, base, api_keys)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ai_service API", "version": __version__, "description": info_description()},
        "servers": [{"url": base or "/"}],
        "tags": [
            {"name": "predict", "description": "Run models on images"},
            {"name": "images", "description": "Image utilities without a model"},
            {"name": "models", "description": "What is served, and its lifecycle"},
            {"name": "service", "description": "Health and this document"},
            {"name": "history", "description": "Recorded predictions: browse, export, delete"},
            {"name": "jobs", "description": "Bulk jobs: archives and folders through a model, in the background"},
            {"name": "stats", "description": "Aggregates of the history and the jobs, for the dashboard"},
            {"name": "meshes", "description": "3D models: facts, views and conversion; no model"},
        ],
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "headers": HEADERS, "securitySchemes": SECURITY_SCHEMES},
        "x-error-codes": [
            {"code": code, "status": status, "meaning": meaning} for code, (status, meaning) in ERRORS.items()
        ],
    }


HEADERS = {
    "X-Request-ID": {
        "description": "Your X-Request-ID if it was sane (1-128 of A-Z a-z 0-9 . _ : -), else a new "
        "id; every log line of the request carries it.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying (503 overloaded, 429).",
        "schema": {"type": "integer"},
    },
}


PATH_PARAMETERS = {
    "ref": {
        "description": "Model name (newest version) or name@version.",
        "example": "digits",
        "schema": {"type": "string", "pattern": s.MODEL_NAME_PATTERN},
    },
    "example": {
        "description": "The file name of one of the model's `examples`.",
        "example": "handwritten-7.png",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
    },
    "action": {
        "description": "What to do with the model.",
        "schema": {"type": "string", "enum": ["load", "unload", "offload"]},
    },
    "id": {
        "description": "A history entry's id (`history_id` in predict results): 32 lowercase hex digits.",
        "example": "0192f1c3a5b4e6d7c8b9a0f1e2d3c4b5",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    },
    "job_id": {
        "description": "A job's id (`id` of POST /api/v1/jobs): 32 lowercase hex digits.",
        "example": "0192f1c3a5b4e6d7c8b9a0f1e2d3c4b6",
        "schema": {"type": "string", "pattern": s.JOB_ID_PATTERN},
    },
}
SECURITY_SCHEMES = {
    "adminToken": {"type": "http", "scheme": "bearer", "description": "AI_SERVICE_ADMIN_TOKEN"},
    "apiKeyBearer": {"type": "http", "scheme": "bearer", "description": "One of AI_SERVICE_API_KEYS"},
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "One of AI_SERVICE_API_KEYS",
    },
}


def operation_object(op: Operation, params: list[str], refs: dict, base: str, api_keys: bool) -> dict[str, Any]:
    """One OpenAPI operation: parameters, request body, every response, and curl samples."""
    request_id = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    error = {
        "content": {"application/json": {"schema": refs[(s.ErrorResponse, "serialization")]}},
        "headers": {**request_id, "Retry-After": {"$ref": "#/components/headers/Retry-After"}},
    }
    success: dict[str, Any] = {"description": "Success", "headers": request_id}
    if op.success == 202:
        success["headers"] = {**request_id, "Location": LOCATION}
    if op.success == 204:
        success["description"] = "Done; no body"
    elif op.media:
        files = {kind: {"schema": {"type": "string", "contentMediaType": kind}} for kind in op.media}
        success["content"] = {"application/octet-stream": BINARY, **files}
    elif op.response is not None:
        success["content"] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
    else:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    if op.image_response:
        success["content"].update(
            {kind: {"schema": {"type": "string", "contentMediaType": kind}} for kind in op.image_types}
        )
        success["description"] = f"JSON, or the encoded output image itself (see `{image_switch(op)}`)"
        if op.image_default:
            success["content"] = {"application/octet-stream": BINARY, **success["content"]}
    responses: dict[str, Any] = {str(op.success): success}
    for status in op.errors:
        responses[str(status)] = {"description": status_description(status), **error}
    responses["default"] = {"description": "Any other error (401, 429, 500, ...): the same error envelope", **error}
    result: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": responses,
    }
    if op.description:
        result["description"] = op.description
    parameters = [{"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]} for name in params]
    parameters += query_parameters(op.query) if op.query else []
    parameters.append(REQUEST_ID)
    if parameters:
        result["parameters"] = parameters
    if op.security == "admin":
        result["security"] = [{"adminToken": []}]
    elif op.security == "key":  # `{}`: anonymous calls too, while AI_SERVICE_API_KEYS is unset
        result["security"] = [{"apiKeyBearer": []}, {"apiKeyHeader": []}, *([] if api_keys else [{}])]
    if op.request:
        content = {kind: {"schema": refs[(body, "validation")]} for kind, body in op.request.items()}
        if "multipart/form-data" in content:
            fields = op.request["multipart/form-data"].model_fields
            content["multipart/form-data"]["encoding"] = {
                part: {"contentType": kind} for part, kind in FILE_PARTS.items() if part in fields
            }
        if "application/json" in content:
            sample = f"data:image/png;base64,{SAMPLE_PNG_BASE64}"
            one = "image" in op.request["application/json"].model_fields  # predict: `image`; jobs take `images`
            content["application/json"]["example"] = {
                "model": "digits",
                "top_k": 3,
                **({"image": sample} if one else {"images": [sample, sample]}),
            }
        result["requestBody"] = {"required": True, "content": content}
    if op.examples:
        result["x-codeSamples"] = [
            {"lang": "Shell", "label": label, "source": line.replace("{base}", base)} for label, line in op.examples
        ]
    return result


def image_switch(op: Operation) -> str:
    """The request field that picks the image body over JSON: predict's `return`, convert's `response`."""
    fields = {info.alias or name for body in op.request.values() for name, info in body.model_fields.items()}
    return "return" if "return" in fields else "response"


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One query parameter per field of `model`, its schema from pydantic (the null of an optional field dropped:
    a query parameter is left out, never null); an optional one may be sent empty, which means "not set" (as HTML
    forms send them, ai_service/api/history.py query_args), hence allowEmptyValue."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema["properties"].items():
        prop = {key: value for key, value in prop.items() if key != "title"}
        description = prop.pop("description", "")
        options = [option for option in prop.pop("anyOf", []) if option.get("type") != "null"]
        if len(options) == 1:
            prop = {**options[0], **prop}
        elif options:
            prop["anyOf"] = options
        if prop.get("default", 0) is None:
            del prop["default"]
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if name not in required:
            parameter["allowEmptyValue"] = True
        found.append({**parameter, "description": description} if description else parameter)
    return found


def status_description(status: int) -> str:
    """A response's description from ERRORS, the one table: the status's phrase and the codes that answer with it."""
    codes = ", ".join(f"`{code}`" for code, kind in ERRORS.items() if kind.status == status)
    return f"{HTTPStatus(status).phrase}: {codes}" if codes else HTTPStatus(status).phrase


def info_description() -> str:
    """The document's introduction: the envelope, and every stable error code."""
    rows = "\n".join(f"| `{code}` | {status} | {meaning} |" for code, (status, meaning) in ERRORS.items())
    return (
        'Every failure, on every endpoint, is `{"error": {"code", "message", "details"}}` with the HTTP '
        "status below; every response carries `X-Request-ID`.\n\n| code | status | meaning |\n|---|---|---|\n" + rows
    )


def openapi_document(base: str) -> dict[str, Any]:
    """The document for the current app and `base` URL, built once per base."""
    cache: dict[str, dict[str, Any]] = current_app.extensions.setdefault("openapi_documents", {})
    if base not in cache:
        if len(cache) >= CACHED_BASES:
            cache.pop(next(iter(cache)))
        cache[base] = build_document(current_app, runtime(), base)
    return cache[base]


def request_base() -> str:
    """The URL this server was reached at (no trailing slash), for examples that work as pasted."""
    return request.host_url.rstrip("/")
