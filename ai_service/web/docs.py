"""GET /docs: the API reference rendered from the OpenAPI document, with curl lines and a try-it console."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import render_template
from markupsafe import Markup, escape

from ai_service.errors import ERRORS
from ai_service.http.context import runtime
from ai_service.http.openapi import openapi_document, request_base
from ai_service.web import bp

METHOD_ORDER = {"get": 0, "post": 1, "put": 2, "patch": 3, "delete": 4}


@bp.get("/docs")
def docs():
    document = openapi_document(request_base())
    schemas = document["components"]["schemas"]
    return render_template(
        "docs.html",
        info=document["info"],
        base=request_base(),
        schema_names=set(schemas),
        default_model=runtime().settings.models.default_model,
        operations=list_operations(document),
        error_codes=ERRORS,
        schemas=[
            {"name": name, "description": schema.get("description", ""), "fields": schema_fields(schema, schemas)}
            for name, schema in sorted(schemas.items())
        ],
    )


@bp.app_template_filter("code_spans")
def code_spans(text: str) -> Markup:
    """Escape text and turn `backticked` spans (as the schema descriptions use them) into <code>."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def list_operations(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Operations in page order (by tag, then path, then method) with everything the template shows."""
    schemas = document["components"]["schemas"]
    tags = [tag["name"] for tag in document.get("tags", [])]
    found = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {})
            found.append(
                {
                    "id": op["operationId"],
                    "method": method.upper(),
                    "path": path,
                    "tag": op["tags"][0],
                    "summary": op["summary"],
                    "description": op.get("description", ""),
                    "params": [
                        {
                            "name": p["name"],
                            "description": p.get("description", ""),
                            "example": p.get("example", ""),
                            "choices": choices(p["schema"]),
                        }
                        for p in op.get("parameters", [])
                        if p["in"] == "path"
                    ],
                    "query": [
                        {
                            "name": p["name"],
                            "description": p.get("description", ""),
                            "choices": choices(p["schema"]),
                            "type": p["schema"].get("type", ""),
                            "default": p["schema"].get("default"),
                        }
                        for p in op.get("parameters", [])
                        if p["in"] == "query"
                    ],
                    "bodies": [
                        {
                            "content_type": kind,
                            "schema": ref_name(media["schema"]),
                            "fields": schema_fields(media["schema"], schemas),
                        }
                        for kind, media in body.items()
                    ],
                    "responses": [
                        {
                            "status": status,
                            "description": response["description"],
                            "types": list(response.get("content", {})),
                            "schema": next(
                                (
                                    ref_name(m["schema"])
                                    for m in response.get("content", {}).values()
                                    if "$ref" in m["schema"]
                                ),
                                None,
                            ),
                        }
                        for status, response in op["responses"].items()
                    ],
                    "examples": op.get("x-codeSamples", []),
                }
            )
    order = {name: index for index, name in enumerate(tags)}
    return sorted(
        found, key=lambda op: (order.get(op["tag"], len(order)), op["path"], METHOD_ORDER[op["method"].lower()])
    )


def ref_name(schema: Mapping[str, Any]) -> str | None:
    """`#/components/schemas/Name` → Name."""
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def schema_fields(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The properties of an object schema (following one $ref) as rows: name, type, required, default, meaning."""
    name = ref_name(schema)
    if name:
        schema = schemas.get(name, {})
    required = set(schema.get("required", []))
    rows = []
    for field, prop in schema.get("properties", {}).items():
        rows.append(
            {
                "name": field,
                "type": type_label(prop),
                "required": field in required,
                "default": prop.get("default"),
                "has_default": "default" in prop and prop["default"] is not None,
                "description": prop.get("description", ""),
                "limits": limits(prop),
                "choices": choices(prop),
            }
        )
    return rows


def type_label(prop: Mapping[str, Any]) -> str:
    """A short human type: `integer`, `string | null`, `array of Prediction`, `one of png, webp, jpeg`, `file`."""
    if "$ref" in prop:
        return ref_name(prop) or "object"
    if "anyOf" in prop:
        return " | ".join(type_label(option) for option in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(str(value) for value in prop["enum"])
    if "const" in prop:
        return repr(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {type_label(prop.get('items', {}))}"
    if kind == "string" and prop.get("format") == "binary":
        return "file"
    return str(kind)


def choices(prop: Mapping[str, Any]) -> list[Any]:
    """The allowed values of an enum field (inside an optional anyOf too), for the try-it selects."""
    for option in (prop, *prop.get("anyOf", [])):
        if "enum" in option:
            return list(option["enum"])
    return []


def limits(prop: Mapping[str, Any]) -> str:
    """Range and length constraints in words (from the first non-null branch of an anyOf)."""
    branch = next((option for option in prop.get("anyOf", []) if option.get("type") != "null"), prop)
    words = {
        "minimum": "≥ {}",
        "maximum": "≤ {}",
        "exclusiveMinimum": "> {}",
        "minLength": "length ≥ {}",
        "maxLength": "length ≤ {}",
        "minItems": "≥ {} items",
        "maxItems": "≤ {} items",
        "pattern": "matches {}",
    }
    return ", ".join(template.format(branch[key]) for key, template in words.items() if key in branch)
