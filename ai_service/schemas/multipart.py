"""The one rule for multipart/form-data fields, and the schema that says exactly that (README, "Envelope").

A multipart field is sent with a value or left out; multipart has no null. An empty value is a value: it is validated
like any other (`resample=` is not a filter, so it is refused), never taken for "not sent". A field sent twice is
refused. The JSON bodies differ only in that `null` there means "not sent".
"""

from __future__ import annotations

from typing import Any, Final

RULE: Final = (
    "Multipart fields: leave a field out for its default (multipart has no null); an empty value is validated like "
    "any other value, not taken for a missing field, and a field sent twice is refused (422 `validation_error`)."
)


def multipart_fields(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of a multipart body model: each optional field without its `null` alternative and default,
    and the rule in the description."""
    for prop in schema.get("properties", {}).values():
        if "anyOf" in prop:
            options = [option for option in prop.pop("anyOf") if option.get("type") != "null"]
            if len(options) == 1:
                prop.update({key: value for key, value in options[0].items() if key not in prop})
            elif options:
                prop["anyOf"] = options
        if "default" in prop and prop["default"] is None:
            del prop["default"]
    schema["description"] = f"{schema.get('description', '').strip()}\n\n{RULE}".strip()
