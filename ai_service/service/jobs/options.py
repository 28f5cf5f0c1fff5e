"""A job's per-request options: stored as the JSON the API validated, turned back into ModelOptions per chunk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ai_service.errors import ServiceError
from ai_service.schemas import PredictOptions

if TYPE_CHECKING:
    from ai_service.models.base import ModelOptions

#: The option names a job keeps (every /predict option but the model, which the job names itself).
NAMES = frozenset(
    name
    for field_name, field in PredictOptions.model_fields.items()
    if field_name != "model"
    for name in (field_name, field.alias)
    if name
)


def validated(options: dict[str, Any]) -> PredictOptions:
    """The options as /predict would accept them; unknown names and bad values are validation_error (422)."""
    unknown = sorted(set(options) - NAMES - {"model"})
    if unknown:
        raise ServiceError(
            "validation_error",
            f"Invalid request: unknown option(s) {', '.join(unknown)}.",
            [{"loc": [name], "msg": "not a predict option", "type": "extra_forbidden"} for name in unknown],
        )
    try:
        return PredictOptions.model_validate({k: v for k, v in options.items() if k != "model"})
    except ValidationError as error:
        issues = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        raise ServiceError("validation_error", f"Invalid request: {issues[0]['msg']}.", issues) from None


def stored(options: dict[str, Any]) -> dict[str, Any]:
    """The JSON kept in jobs.options: the options that are set, by their API names (`return`, not `return_`)."""
    return validated(options).model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"model"})


def model_options(options: dict[str, Any] | None, default_top_k: int) -> ModelOptions:
    """What the model's preprocess/postprocess receive, from the stored options."""
    return validated(options or {}).model_options(default_top_k)
