"""/api/v1/jobs…: bulk jobs (ai_service.service.jobs): submit an archive, many files or JSON images; follow, list,
cancel; download the results and the output images.

A job's upload may be far larger than a predict request: its body limit is `AI_SERVICE_JOBS_MAX_UPLOAD_MB`, set
on the request before anything reads the body. Jobs hold other clients' images and results, so with API keys
configured reading them needs a key too (the security hook asks for keys on POST and DELETE already).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Response, jsonify, request, url_for
from werkzeug.exceptions import BadRequest

from ai_service.api import bp
from ai_service.api.common import FORM_TYPES, bytes_from_text, require_json_body
from ai_service.api.history import query_args
from ai_service.errors import ServiceError
from ai_service.http.bodies import MIB, body_limit_errors, raise_body_limits
from ai_service.http.context import caller, runtime
from ai_service.http.inputs import form_fields, validate
from ai_service.http.security import require_api_key
from ai_service.schemas import (
    JOB_ID_PATTERN,
    JobCreated,
    JobJSON,
    JobOptions,
    JobPage,
    JobResultsQuery,
    JobsQuery,
    JobStatus,
)
from ai_service.service import jobs
from ai_service.service.history.export import MEDIA_TYPES
from ai_service.service.jobs.archive import (
    JobItem,
    items_from_archive,
    items_from_files,
    items_from_json,
    relative_name,
)
from ai_service.service.upload import Upload

if TYPE_CHECKING:
    from ai_service.service.runtime import Runtime

#: Form fields besides the images (model and options): the multipart part limit is max_items plus these.
OPTION_PARTS = 32
BASE64_OVERHEAD = 4 / 3
JSON_SLACK_BYTES = 1 * MIB
JOB_ID = re.compile(JOB_ID_PATTERN.strip("^$"))
# The job routes take 32 characters (`string(length=32)`), so that POST /jobs/json is no job id: GET or DELETE on it
# is 405, and OPTIONS on it allows POST only; an id of another length is the router's 404 `not_found`.


def require_jobs() -> None:
    """Jobs off: 503 `jobs_disabled` before a byte of the body is read."""
    if runtime().jobs is None:
        raise ServiceError(
            "jobs_disabled", "Bulk jobs are off on this server; start it with AI_SERVICE_JOBS=on to accept them."
        )


def require_reader() -> None:
    """With API keys configured, jobs are read with a key (or the admin token), like the history."""
    require_api_key(runtime().settings.security, "Reading jobs requires an API key")


def job_path(job_id: str) -> str:
    """A job id from the URL, or 404 without asking the database (it also goes into download file names)."""
    if not JOB_ID.fullmatch(job_id):
        raise ServiceError("not_found", f"No job with id {job_id[:64]!r}.", {"id": job_id[:64]})
    return job_id


@bp.post("/jobs")
def create_job():
    """Store the inputs, queue the chunks, answer 202 at once: the images run in the background."""
    require_jobs()
    current = runtime()
    call = parse_job_request(current)
    created = jobs.submit(current, call.model, call.items, call.options, caller("api"), name=call.name)
    body = JobCreated.model_validate(created).model_dump(mode="json")
    location = url_for("api.get_job", job_id=body["id"])
    return jsonify(body), 202, {"Location": location}


@bp.post("/jobs/json")
def create_job_json():
    """POST /jobs with a JSON body (`images`), an operation of its own; other bodies are 415."""
    require_jobs()
    require_json_body()
    return create_job()


@bp.get("/jobs")
def list_jobs():
    """The newest jobs first, optionally only those in one state."""
    require_jobs()
    require_reader()
    args = query_args(JobsQuery)
    found = jobs.listing(runtime(), limit=args.limit, status=args.status, before=args.before)
    return jsonify(JobPage.model_validate({"items": found}).model_dump(mode="json"))


@bp.get("/jobs/<string(length=32):job_id>")
def get_job(job_id: str):
    """State, counts, throughput and ETA: what a client polls."""
    require_jobs()
    require_reader()
    body = JobStatus.model_validate(jobs.status(runtime(), job_path(job_id))).model_dump(mode="json")
    return jsonify(body), 200, {"Cache-Control": "no-store"}


@bp.delete("/jobs/<string(length=32):job_id>")
def cancel_job(job_id: str):
    """Stop a queued or running job; the images already done keep their results."""
    require_jobs()
    return jsonify(JobStatus.model_validate(jobs.cancel(runtime(), job_path(job_id))).model_dump(mode="json"))


@bp.get("/jobs/<string(length=32):job_id>/results")
def job_results(job_id: str):
    """One row per input, in input order, with its archive path: JSON lines, CSV or Parquet, streamed."""
    require_jobs()
    require_reader()
    fmt = query_args(JobResultsQuery).format
    stream = jobs.results(runtime(), job_path(job_id), fmt)
    return download(stream, MEDIA_TYPES[fmt], f"job-{job_id}.{fmt}")


@bp.get("/jobs/<string(length=32):job_id>/outputs.zip")
def job_outputs(job_id: str):
    """The output images (image-to-image, masks), named after their inputs, as one streamed zip."""
    require_jobs()
    require_reader()
    stream = jobs.outputs_zip(runtime(), job_path(job_id))
    return download(stream, "application/zip", f"job-{job_id}-outputs.zip")


def download(stream: Iterator[bytes], media_type: str, filename: str) -> Response:
    """A streamed attachment that proxies pass on as it comes and nobody caches (a running job's rows grow)."""
    response = Response(stream, content_type=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


# --- parsing POST /api/v1/jobs --------------------------------------------------------------------------------


@dataclass
class JobCall:
    """A parsed job submission: the model ref, every input (or why it is unusable), the options, a label."""

    model: str
    #: A list (JSON) or items made one at a time from the upload's temporary files (archive, file parts).
    items: Iterable[JobItem]
    options: dict[str, Any]
    name: str


def parse_job_request(current: Runtime) -> JobCall:
    """multipart (`archive`, or `file` parts) or JSON (`images`), within the jobs' own body limits."""
    limits = current.settings.jobs
    max_bytes = int(limits.max_upload_mb * MIB)
    mimetype = request.mimetype
    is_json = mimetype == "application/json" or mimetype.endswith("+json")
    if is_json:
        max_bytes = int(max_bytes * BASE64_OVERHEAD) + JSON_SLACK_BYTES
    elif mimetype not in FORM_TYPES and (mimetype or request.content_length):
        raise ServiceError(
            "unsupported_media_type",
            "Send multipart/form-data (one `archive` part, or `file` parts) or application/json (`images` as "
            f"base64); got {mimetype or 'no content type'}.",
        )
    parts = limits.max_items + OPTION_PARTS
    raise_body_limits(max_bytes, parts)
    with body_limit_errors(max_bytes, "AI_SERVICE_JOBS_MAX_UPLOAD_MB", parts, "AI_SERVICE_JOBS_MAX_ITEMS"):
        return _parse_json(current) if is_json else _parse_form(current)


def _parse_form(current: Runtime) -> JobCall:
    """Options from the form fields; the images from one `archive` part or from the `file` parts."""
    options = validate(JobOptions, form_fields())
    archives, files = request.files.getlist("archive"), request.files.getlist("file")
    if archives and files or len(archives) > 1:
        raise ServiceError(
            "validation_error",
            "Invalid request: send one `archive` part or `file` parts, not both.",
            [{"loc": ["archive"], "msg": "one archive, or file parts, not both", "type": "value_error"}],
        )
    if not archives and not files:
        other = sorted(request.files)
        hint = f" (got file field(s) {other})" if other else ""
        raise ServiceError(
            "missing_file", f"Send a zip or tar archive as the part `archive`, or images as `file` parts{hint}."
        )
    model = known_model(current, options)
    if archives:
        archive = archives[0]
        filename = archive.filename or "archive"
        items = items_from_archive(archive.stream, filename, current.settings.jobs)
        return JobCall(model, items, run_options(options), options.name or filename[:255])
    check_count(current, len(files))
    # werkzeug keeps large parts in temporary files: their sizes are checked here, their bytes read one at a time
    items = items_from_files([((part.filename or "")[:1024], part.stream) for part in files], current.settings.jobs)
    return JobCall(model, items, run_options(options), options.name or "files")


def _parse_json(current: Runtime) -> JobCall:
    """`images` as base64 or data: URLs (a bad one is that item's error), named by `filenames` or their index."""
    try:
        data = request.get_json()
    except BadRequest:
        raise ServiceError("invalid_json", "The request body is not valid JSON.") from None
    body = validate(JobJSON, data, strict=True)
    check_count(current, len(body.images))
    model = known_model(current, body)
    names = body.filenames or [""] * len(body.images)
    parts = [decoded(text, name, index) for index, (text, name) in enumerate(zip(body.images, names, strict=True))]
    items = items_from_json(parts, current.settings.jobs)
    for item, name in zip(items, names, strict=True):
        if item.error is not None and name:  # a refused image keeps the name the client gave it
            item.path = relative_name(name) or item.path
    return JobCall(model, items, run_options(body), body.name or "json")


def decoded(text: str, name: str, index: int) -> Upload | ServiceError:
    """One JSON image's bytes with its name, or why they could not be read."""
    try:
        return Upload(data=bytes_from_text(text, ["images", index]), filename=name)
    except ServiceError as error:
        return error


def check_count(current: Runtime, count: int) -> None:
    """At most `max_items` images per job."""
    limit = current.settings.jobs.max_items
    if count > limit:
        raise ServiceError(
            "too_many_files",
            f"At most {limit} images per job (AI_SERVICE_JOBS_MAX_ITEMS); got {count}.",
            {"limit": limit},
        )


def known_model(current: Runtime, options: JobOptions) -> str:
    """The model ref, checked before any input is unpacked or stored (unknown → 404 `unknown_model`)."""
    ref = options.model or current.settings.models.default_model
    current.resolve(ref)
    return ref


def run_options(options: JobOptions) -> dict[str, Any]:
    """The per-image options every chunk runs with, as JSON (what the job row keeps)."""
    return options.model_dump(mode="json", include=set(JobOptions.model_fields) - {"model", "name"}, exclude_none=True)
