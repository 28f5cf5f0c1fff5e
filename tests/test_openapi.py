"""The OpenAPI document and /docs: valid 3.1, generated from the pydantic models, true to real responses."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import encode
from jsonschema import Draft202012Validator
from live_server import serve
from openapi_spec_validator import validate
from PIL import Image
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from ai_service import create_app, schemas
from ai_service.errors import ERRORS, HTTP_STATUS_CODES
from ai_service.imaging import errors as imaging_errors

PACKAGE = Path(__file__).resolve().parent.parent / "ai_service"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def app(home: Path):
    return create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "admin_token": ADMIN_TOKEN})


@pytest.fixture
def document(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def test_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"]


def test_every_api_route_is_documented_and_nothing_else(app, document):
    routed = {
        (method.lower(), re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert routed == documented
    assert {
        ("post", "/api/v1/predict"),
        ("get", "/api/v1/models"),
        ("get", "/api/v1/health"),
        ("get", "/api/v1/system"),
        ("post", "/api/v1/models/{ref}/{action}"),
    } <= documented


def schema_model(name: str):
    """A component's pydantic model: in ai_service.schemas or one of its feature modules (ai_service.schemas.*)."""
    modules = [schemas] + [
        module for key, module in sorted(sys.modules.items()) if key.startswith("ai_service.schemas.")
    ]
    return next(getattr(module, name) for module in modules if hasattr(module, name))


def test_components_are_generated_from_the_pydantic_models(document):
    components = document["components"]["schemas"]
    for name, schema in components.items():
        model = schema_model(name)
        expected = {field.alias or key for key, field in model.model_fields.items()}
        assert set(schema["properties"]) == expected, name
    assert components["ErrorBody"]["properties"]["code"]["enum"] == list(ERRORS)
    predict = document["paths"]["/api/v1/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"multipart/form-data"}  # one body type per operation
    predict_json = document["paths"]["/api/v1/predict/json"]["post"]
    assert set(predict_json["requestBody"]["content"]) == {"application/json"}
    assert predict_json["responses"] == predict["responses"]
    jobs = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert set(jobs) == {"multipart/form-data"} and "archive" in jobs["multipart/form-data"]["encoding"]
    assert set(document["paths"]["/api/v1/jobs/json"]["post"]["requestBody"]["content"]) == {"application/json"}
    assert {"200", "400", "413", "415", "422", "default"} <= set(predict["responses"])


def test_every_error_code_the_code_can_raise_is_listed():
    raised = set(HTTP_STATUS_CODES.values())
    raised |= {
        cls.code
        for cls in vars(imaging_errors).values()
        if isinstance(cls, type) and issubclass(cls, imaging_errors.ImageDecodeError)
    }
    for path in PACKAGE.rglob("*.py"):
        if path.name == "client.py":  # the client re-raises what a server answered; it raises no code of its own
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "ServiceError"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                raised.add(node.args[0].value)
    assert raised - set(ERRORS) == set()


def test_error_responses_are_described_from_the_error_table(document):
    """No second table: each documented error status names the codes ERRORS answers with it."""
    for methods in document["paths"].values():
        for operation in methods.values():
            for status, response in operation["responses"].items():
                if status.isdigit() and int(status) >= 400:
                    described = set(re.findall(r"`(\w+)`", response["description"]))
                    assert described == {code for code, kind in ERRORS.items() if kind.status == int(status)}


def response_validator(document: dict, path: str, method: str, status: str = "200") -> Draft202012Validator:
    """A JSON Schema validator for one documented response, with the document's components resolvable."""
    operation = document["paths"][path][method]
    response = operation["responses"].get(status) or operation["responses"]["default"]
    schema = response["content"]["application/json"]["schema"]
    registry = Registry().with_resource(
        "urn:openapi", DRAFT202012.create_resource({"components": document["components"]})
    )
    ref_schema = json.loads(json.dumps(schema).replace('"#/components/', '"urn:openapi#/components/'))
    return Draft202012Validator(ref_schema, registry=registry)


def assert_conforms(document, response, path, method):
    status = str(response.status_code)
    errors = list(response_validator(document, path, method, status).iter_errors(response.get_json()))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def test_real_responses_match_the_document(client, document):
    digit = encode(Image.new("L", (32, 32), 255))
    gradient = encode(Image.radial_gradient("L").resize((24, 24)))
    cases = [
        (client.post("/api/v1/predict", data={"file": (io.BytesIO(digit), "a.png")}), "/api/v1/predict", "post"),
        (
            client.post("/api/v1/predict", data={"file": [(io.BytesIO(digit), "a.png"), (io.BytesIO(b"x"), "b.txt")]}),
            "/api/v1/predict",
            "post",
        ),
        (client.post("/api/v1/predict", json={"images": ["http://x/y.png", "AAAA"]}), "/api/v1/predict", "post"),
        (
            client.post("/api/v1/predict", data={"file": (io.BytesIO(gradient), "g.png"), "model": "edges"}),
            "/api/v1/predict",
            "post",
        ),
        (client.post("/api/v1/predict", json={"image": "AAAA", "top_k": -1}), "/api/v1/predict", "post"),
        (client.post("/api/v1/predict", data={"file": (io.BytesIO(b""), "a.png")}), "/api/v1/predict", "post"),
        (
            client.post(
                "/api/v1/convert",
                data={
                    "file": (io.BytesIO(gradient), "g.png"),
                    "response": "json",
                    "operations": '[{"op": "resize", "width": 12, "fit": "letterbox"}]',
                },
            ),
            "/api/v1/convert",
            "post",
        ),
        (client.get("/api/v1/models"), "/api/v1/models", "get"),
        (client.get("/api/v1/models/digits"), "/api/v1/models/{ref}", "get"),
        (client.get("/api/v1/models/nope"), "/api/v1/models/{ref}", "get"),
        (client.get("/api/v1/system"), "/api/v1/system", "get"),
        (client.get("/api/v1/health"), "/api/v1/health", "get"),
        (
            client.post("/api/v1/models/digits/load", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
            "/api/v1/models/{ref}/{action}",
            "post",
        ),
        (client.post("/api/v1/models/digits/offload"), "/api/v1/models/{ref}/{action}", "post"),
    ]
    statuses = []
    for response, path, method in cases:
        assert response.is_json and response.headers["X-Request-ID"]
        assert_conforms(document, response, path, method)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 422, 400, 200, 200, 200, 404, 200, 200, 200, 401]


class AssetParser(HTMLParser):
    """Collects script/stylesheet sources, inline script bodies and style attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.inline_scripts = 0
        self.style_attributes = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.style_attributes += "style" in attrs or any(name.startswith("on") for name in attrs)
        if tag == "script":
            self._in_script = "src" not in attrs
            self.assets += [attrs["src"]] if "src" in attrs else []
        if tag == "link" and attrs.get("rel") == "stylesheet":
            self.assets.append(attrs["href"])

    def handle_data(self, data):
        self.inline_scripts += self._in_script and bool(data.strip())

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script


def test_docs_page_lists_every_endpoint_from_local_assets_only(client, document):
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.content_type
    html = page.get_data(as_text=True)
    for path, ops in document["paths"].items():
        for method in ops:
            assert f"{method.upper()}</span> <code>{path}</code>" in html, (method, path)
    for code in ERRORS:
        assert f'id="error-{code}"' in html
    parser = AssetParser()
    parser.feed(html)
    assert parser.inline_scripts == 0 and parser.style_attributes == 0
    assert "/static/docs.js" in parser.assets and "/static/docs.css" in parser.assets
    for asset in parser.assets:
        assert asset.startswith("/static/"), asset  # no CDN, no other host
        assert client.get(asset).status_code == 200
    assert "cdn" not in html.lower()


def curl_examples(html: str) -> list[str]:
    import html as html_lib

    return [html_lib.unescape(code) for code in re.findall(r'class="curl"><code>(.*?)</code>', html, re.S)]


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("base64") and shutil.which("bash")) and os.environ.get("CI") != "true",
    reason="curl/base64/bash not installed",
)
def test_docs_curl_examples_work_when_pasted(app, tmp_path):
    """Every curl line on /docs, run by bash against a live server, succeeds and returns what it promises."""
    with serve(app) as base:
        html = subprocess.run(["curl", "-s", base + "/docs"], capture_output=True, text=True, check=True).stdout
        examples = curl_examples(html)
        assert len(examples) >= 8 and examples[0].startswith("echo ")
        env = {**os.environ, "AI_SERVICE_ADMIN_TOKEN": ADMIN_TOKEN}
        for line in examples:
            assert base in line or line.startswith("echo ")
            done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, timeout=60)
            assert done.returncode == 0, (line, done.stderr)
            if "-o " in line:
                assert min(Image.open(tmp_path / line.split("-o ")[1].split()[0]).size) >= 24
            elif line.startswith("curl"):
                body = json.loads(done.stdout)
                assert not isinstance(body.get("error"), dict), (line, body)
                for result in body.get("results", []):
                    assert "error" not in result
                    if "predictions" in result:
                        assert result["predictions"][0]["label"] == "7", line


def test_security_is_documented_when_keys_are_configured(home):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "api_keys": "k1"})
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    validate(document)
    assert document["paths"]["/api/v1/predict"]["post"]["security"] == [{"apiKeyBearer": []}, {"apiKeyHeader": []}]
    assert document["paths"]["/api/v1/models/{ref}/{action}"]["post"]["security"] == [{"adminToken": []}]
    assert "security" not in document["paths"]["/api/v1/health"]["get"]
