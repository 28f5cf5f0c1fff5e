"""Request inputs that the JSON API and the HTML pages read alike: fields validated against a pydantic schema, and
the `file` parts of a multipart form within the per-request file limit."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from ai_service.errors import ServiceError
from ai_service.http.context import runtime
from ai_service.schemas import validation_details
from ai_service.service.upload import Upload

Body = TypeVar("Body", bound=BaseModel)


def validate(schema: type[Body], data: Any, strict: bool = False) -> Body:
    """Validate a body against its pydantic model; failures become 422 `validation_error` naming each field.

    `strict` for JSON, which has real types (`"top_k": true`, `"2"` or `2.0` are not integers); form fields and
    query parameters are text, so they are converted."""
    try:
        return schema.model_validate(data, strict=strict)
    except ValidationError as error:
        issues = validation_details(error)
        first = issues[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        more = f" (and {len(issues) - 1} more problem(s))" if len(issues) > 1 else ""
        raise ServiceError("validation_error", f"Invalid request: {where}: {first['msg']}{more}.", issues) from None


def form_fields() -> dict[str, str]:
    """The multipart text fields, each sent once; an empty value is a value like any other (validated, never taken
    for "not sent": leave a field out for its default), and a repeated one is refused (which copy would count?)."""
    repeated = [(key, len(values)) for key, values in request.form.lists() if len(values) > 1]
    if repeated:
        issues = [
            {"loc": [key], "msg": f"sent {count} times; send it once", "type": "duplicate_field"}
            for key, count in repeated
        ]
        names = ", ".join(f"`{key}`" for key, _ in repeated)
        raise ServiceError("validation_error", f"Invalid request: {names} sent more than once.", issues)
    return request.form.to_dict()


def check_file_count(count: int) -> None:
    """Refuse more images per request than `max_files`."""
    limit = runtime().settings.limits.max_files
    if count > limit:
        raise ServiceError("too_many_files", f"At most {limit} files per request; got {count}.", {"limit": limit})


def uploads_from_form() -> list[Upload]:
    """The `file` parts of a multipart request, with clear errors for the usual mistakes."""
    files = request.files.getlist("file")
    if not files:
        other = sorted(request.files)
        hint = f" (got file field(s) {other})" if other else ""
        raise ServiceError("missing_file", f"Send the image as a multipart/form-data field named 'file'{hint}.")
    check_file_count(len(files))
    return [Upload(data=f.read(), filename=(f.filename or "")[:255]) for f in files]
