"""MkDocs hook: the pages written from the code at build time, so the manual cannot drift from it.

- `api/reference.md`: the HTTP API reference, from the app's own OpenAPI document (GET /api/v1/openapi.json).
- `settings.md`: its `<!-- settings-table -->` marker becomes the table of every setting, from the Settings model
  (ai_service/settings.py: sections, flat names, defaults, limits and the `#:` comments above each field).
- `performance/results/*.md`: bench/results/*.md as they are, the measured numbers the pages quote.
- `deployment/files.md`: the files under deploy/, shown whole.
"""

from __future__ import annotations

import ast
import json
import tempfile
import typing
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://127.0.0.1:8000"
SETTINGS_MARKER = "<!-- settings-table -->"
RESULTS_SECTION = "Results (generated)"
METHOD_ORDER = {"get": 0, "post": 1, "put": 2, "patch": 3, "delete": 4}
#: Where each deploy/ file goes, in the order shown, and what it is for.
DEPLOY_FILES = {
    "ai_service@.service": ("ini", "One gunicorn instance per GPU: `systemctl enable --now ai_service@0`."),
    "ai_service-worker@.service": ("ini", "One Celery worker per GPU for bulk jobs."),
    "ai_service.env": ("bash", "The settings every unit reads: `/etc/ai_service/ai_service.env`."),
    "nginx.conf": ("nginx", "TLS, upload limits and buffering in front of the instances."),
}


# ---- MkDocs events ------------------------------------------------------------------------------------------------


def results() -> list[Path]:
    return sorted((ROOT / "bench" / "results").glob("*.md"))


def on_config(config: Any) -> Any:
    """Fill the nav's "Results (generated)" with every results file, so a new benchmark needs no edit here."""
    pages = [{title(path): f"performance/results/{path.name}"} for path in results()]

    def fill(items: list) -> None:
        for item in items:
            if isinstance(item, dict):
                for key, value in item.items():
                    if key == RESULTS_SECTION:
                        item[key] = pages
                    elif isinstance(value, list):
                        fill(value)

    fill(config["nav"])
    return config


def title(path: Path) -> str:
    """A Markdown file's first heading."""
    heading = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# ")), "")
    return heading[2:].strip() or path.stem


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages before the nav is built, so the nav and links can name them."""
    pages = {"api/reference.md": api_reference_markdown(openapi_document()), "deployment/files.md": deploy_markdown()}
    for result in results():
        pages[f"performance/results/{result.name}"] = result.read_text(encoding="utf-8")
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """settings.md: the marker becomes the generated table."""
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_markdown())
    return markdown


# ---- the HTTP API reference ---------------------------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The document the app serves, with the examples pointing at the address `make run` serves on."""
    from ai_service import create_app

    with tempfile.TemporaryDirectory(prefix="ai_service-docs-") as home:
        app = create_app({"home": home, "log_level": "WARNING", "log_to_file": False})
        try:
            response = app.test_client().get("/api/v1/openapi.json", base_url=BASE)
            return json.loads(response.get_data())
        finally:
            app.extensions["ai_service"].close()


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def schema_type(schema: dict[str, Any]) -> str:
    """A short human type: `integer`, `string or null`, `array of Prediction`, `one of png, webp`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(schema_type(option) for option in schema[key])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {schema_type(schema.get('items', {}))}"
    if kind == "string" and (schema.get("format") == "binary" or "contentMediaType" in schema):
        return "file"
    return str(kind)


def limits(schema: dict[str, Any]) -> str:
    """Ranges and lengths in words (from the first non-null branch of an anyOf)."""
    branch = next((option for option in schema.get("anyOf", []) if option.get("type") != "null"), schema)
    words = {
        "minimum": "≥ {}",
        "maximum": "≤ {}",
        "exclusiveMinimum": "> {}",
        "exclusiveMaximum": "< {}",
        "minLength": "length ≥ {}",
        "maxLength": "length ≤ {}",
        "minItems": "≥ {} items",
        "maxItems": "≤ {} items",
    }
    return ", ".join(template.format(branch[key]) for key, template in words.items() if key in branch)


def field_rows(schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    """A table of an object schema's properties (following one $ref)."""
    if "$ref" in schema:
        schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
    properties = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", []))
    rows = ["| Field | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, prop in properties.items():
        default = f"`{json.dumps(prop['default'])}`" if prop.get("default") is not None else ""
        meaning = " ".join(part for part in (prop.get("description", ""), limits(prop)) if part)
        mark = " (required)" if name in required else ""
        rows.append(f"| `{name}`{mark} | {cell(schema_type(prop))} | {cell(default)} | {cell(meaning)} |")
    return rows


def operation_markdown(path: str, method: str, op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    """One operation: summary, description, parameters, body, responses and the curl lines that work as pasted."""
    lines = [f"### {method.upper()} `{path}` {{#op-{op['operationId'].lower()}}}", "", f"**{op['summary']}**", ""]
    if op.get("description"):
        lines += [op["description"], ""]
    if "security" in op:
        schemes = ", ".join(f"`{name}`" for choice in op["security"] for name in choice)
        lines += [f"Needs: {schemes} (see [Security](../security.md)).", ""]
    parameters = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
    if parameters:
        lines += ["| Parameter | In | Type | Meaning |", "|---|---|---|---|"]
        for p in parameters:
            meaning = " ".join(part for part in (p.get("description", ""), limits(p["schema"])) if part)
            lines.append(f"| `{p['name']}` | {p['in']} | {cell(schema_type(p['schema']))} | {cell(meaning)} |")
        lines.append("")
    for kind, media in op.get("requestBody", {}).get("content", {}).items():
        lines += [f"Request body, `{kind}`:", "", *field_rows(media["schema"], schemas), ""]
    lines += ["| Status | Meaning | Body |", "|---|---|---|"]
    for status, response in op["responses"].items():
        kinds = ", ".join(f"`{kind}`" for kind in response.get("content", {}))
        lines.append(f"| {status} | {cell(response['description'])} | {kinds} |")
    lines.append("")
    for sample in op.get("x-codeSamples", []):
        lines += ["```bash", f"# {sample['label']}", sample["source"], "```", ""]
    return lines


def api_reference_markdown(document: dict[str, Any]) -> str:
    """The whole reference: operations by tag, the error codes, then every schema."""
    schemas = document["components"]["schemas"]
    lines = [
        "# HTTP API reference",
        "",
        f"Generated from the OpenAPI {document['openapi']} document the service serves at `GET /api/v1/openapi.json` "
        f"(version {document['info']['version']}) when this manual was built; the running server's `/docs` page "
        "renders the same document with a *Try it* console. The guides around this page explain the why: "
        "[requests and errors](envelope.md), [predict](predict.md), [convert](convert.md).",
        "",
    ]
    for tag in document.get("tags", []):
        ops = sorted(
            (
                (path, method, op)
                for path, methods in document["paths"].items()
                for method, op in methods.items()
                if op["tags"][0] == tag["name"]
            ),
            key=lambda found: (found[0], METHOD_ORDER.get(found[1], 9)),
        )  # the /docs page's order: a tag's examples that save a sample file come before those that use it
        if ops:
            lines += [f"## {tag['description']} {{#tag-{tag['name']}}}", ""]
            for path, method, op in ops:
                lines += operation_markdown(path, method, op, schemas)
    lines += ["## Error codes {#error-codes}", "", "| Code | Status | Meaning |", "|---|---|---|"]
    lines += [f"| `{e['code']}` | {e['status']} | {cell(e['meaning'])} |" for e in document["x-error-codes"]]
    lines += ["", "## Schemas {#schemas}", ""]
    for name, schema in sorted(schemas.items()):
        lines += [f"### {name} {{#schema-{name.lower()}}}", ""]
        if schema.get("description"):
            lines += [" ".join(schema["description"].split()), ""]
        rows = field_rows(schema, schemas)
        lines += [*rows, ""] if rows else [f"Type: {cell(schema_type(schema))}", ""]
    return "\n".join(lines)


# ---- the settings table -------------------------------------------------------------------------------------------


def field_comments(source: str) -> dict[tuple[str, str], str]:
    """(class, field) → the `#:` comment lines right above the field, joined (the attribute docs of the guide)."""
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                comment: list[str] = []
                at = item.lineno - 2
                while at >= 0 and lines[at].strip().startswith("#:"):
                    comment.insert(0, lines[at].strip()[2:].strip())
                    at -= 1
                found[(node.name, item.target.id)] = " ".join(comment)
    return found


def shown_default(value: Any) -> str:
    """A default as one would write it in the environment."""
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple):
        value = ",".join(value)
    return f"`{value}`" if value not in ("", None) else "—"


def allowed(info: Any) -> str:
    """Choices (a Literal) and bounds (ge, gt, le, lt) of a field, in words."""
    words = []
    if typing.get_origin(info.annotation) is typing.Literal:
        words.append("one of " + ", ".join(f"`{c}`" for c in typing.get_args(info.annotation) if c != ""))
    for bound in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(bound, attr, None) is not None:
                words.append(f"{sign} {getattr(bound, attr)}")
    return "; ".join(words)


def settings_markdown() -> str:
    """One table per section of the Settings model: variable, default, meaning (with choices and bounds)."""
    from ai_service import settings as module

    comments = field_comments(Path(module.__file__).read_text(encoding="utf-8"))
    defaults = module.Settings.model_construct()
    groups: dict[str | None, list[str]] = {}
    for flat, (section, field) in module.FLAT_NAMES.items():
        owner = type(getattr(defaults, section)) if section else module.Settings
        info = owner.model_fields[field]
        default = (
            "see the meaning"
            if info.default_factory is not None
            else shown_default(getattr(getattr(defaults, section) if section else defaults, field))
        )
        bounds = allowed(info)
        meaning = " ".join(
            part for part in (comments.get((owner.__name__, field), ""), bounds and f"({bounds})") if part
        )
        python = f"settings.{section}.{field}" if section else f"settings.{field}"
        groups.setdefault(section, []).append(
            f"| `{module.ENV_PREFIX}{flat.upper()}` | {default} | {cell(meaning)} | `{python}` |"
        )
    lines = []
    for section, rows in groups.items():
        owner = type(getattr(defaults, section)) if section else module.Settings
        title = f"`[{section}]`" if section else "General"
        lines += [f"### {title} {{#section-{section or 'general'}}}", "", " ".join((owner.__doc__ or "").split()), ""]
        lines += ["| Variable | Default | Meaning | In Python |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


# ---- deploy/ ------------------------------------------------------------------------------------------------------


def deploy_markdown() -> str:
    """Every file under deploy/, whole, so the page is always the file that ships."""
    lines = [
        "# The deploy/ files",
        "",
        "The samples [nginx and systemd](nginx-systemd.md) installs, as they are in the repository "
        "(this page is generated from them).",
        "",
    ]
    for name, (language, why) in DEPLOY_FILES.items():
        text = (ROOT / "deploy" / name).read_text(encoding="utf-8").rstrip("\n")
        lines += [f"## `deploy/{name}`", "", why, "", f"```{language}", text, "```", ""]
    others = sorted(path.name for path in (ROOT / "deploy").iterdir() if path.name not in DEPLOY_FILES)
    for name in others:
        lines += [f"## `deploy/{name}`", "", "```text", (ROOT / "deploy" / name).read_text().rstrip("\n"), "```", ""]
    return "\n".join(lines)
