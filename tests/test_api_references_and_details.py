"""Issue 20, items 1 and 6: one model-reference definition, and the details a client reads (errors, security, docs)."""

from __future__ import annotations

import base64
import io
import re
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import encode
from openapi_spec_validator import validate
from PIL import Image
from pydantic import ValidationError

from ai_service import create_app
from ai_service.model_refs import MODEL_REF_PATTERN
from ai_service.models.base import ModelInfo
from ai_service.schemas import ErrorResponse, ModelsResponse, PredictForm, PredictJSON

PREDICT = "/api/v1/predict"
README = Path(__file__).resolve().parent.parent / "docs" / "client.md"  # the client's page of the manual
PLUS_PLUGIN = """
import torch
from ai_service.models.base import Batch, ImageModel, ModelInfo, top_k_predictions


class Plus(ImageModel):
    info = ModelInfo(name="plus", version="1.0+local", input_size=(4, 4), input_mode="L", labels=("low", "high"))

    def load(self, device):
        self.network = torch.nn.Identity()
        self.device = device

    def preprocess(self, images, options):
        return Batch(torch.zeros(len(images), 2))

    def postprocess(self, outputs, items, options):
        return top_k_predictions(outputs, self.info.labels, 1)
"""


@pytest.fixture
def app(home: Path):
    folder = home / "models"
    folder.mkdir(parents=True)
    (folder / "plus.py").write_text(textwrap.dedent(PLUS_PLUGIN))
    (folder / "broken.py").write_text("raise RuntimeError('this plugin does not import')\n")
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "max_files": 5})
    yield app
    app.extensions["ai_service"].close()


@pytest.fixture
def png() -> bytes:
    return encode(Image.new("L", (8, 8), 200))


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return ErrorResponse.model_validate(response.get_json()).error.model_dump()


def document(client) -> dict:
    body = client.get("/api/v1/openapi.json").get_json()
    validate(body)
    return body


# --- item 1: one model reference, used everywhere --------------------------------------------------------------


def test_a_plus_version_is_addressable_wherever_it_is_listed(client, png):
    assert client.get("/api/v1/models/plus@1.0+local").status_code == 200
    multipart = client.post(
        PREDICT,
        data={"file": (io.BytesIO(png), "a.png"), "model": "plus@1.0+local"},
        content_type="multipart/form-data",
    )
    assert multipart.status_code == 200, multipart.get_data(as_text=True)
    assert multipart.get_json()["version"] == "1.0+local"
    as_json = client.post(
        PREDICT, json={"image": "data:image/png;base64," + base64.b64encode(png).decode(), "model": "plus@1.0+local"}
    )
    assert as_json.status_code == 200, as_json.get_data(as_text=True)


@pytest.mark.parametrize(
    "name, version",
    [("plus", "1.0+local"), ("a", "v" * 100), ("n" * 100, "1"), ("x.y_z-1", "2024.01.02+cu121")],
)
def test_every_name_and_version_model_info_accepts_is_a_valid_reference(name, version):
    ModelInfo(name=name, version=version)
    for ref in (name, f"{name}@{version}"):
        assert re.match(MODEL_REF_PATTERN, ref), ref
        PredictJSON.model_validate({"image": "x", "model": ref})


@pytest.mark.parametrize("ref", ["@1", "a@", "a@b@c", "a b", "a/b", "-a", "a@.1", "n" * 101, "a@" + "v" * 101])
def test_a_malformed_reference_is_refused(ref):
    assert not re.match(MODEL_REF_PATTERN, ref)
    with pytest.raises(ValidationError):
        PredictJSON.model_validate({"image": "x", "model": ref})


@pytest.mark.parametrize("name, version", [("-a", "1"), ("a", ".1"), ("a b", "1"), ("a", "1/2"), ("n" * 101, "1")])
def test_what_model_info_refuses_no_reference_accepts(name, version):
    with pytest.raises(ValueError):
        ModelInfo(name=name, version=version)
    assert not re.match(MODEL_REF_PATTERN, f"{name}@{version}")


def test_the_document_describes_one_reference_pattern(client):
    body = document(client)
    schemas = body["components"]["schemas"]
    ref_parameter = next(p for p in body["paths"]["/api/v1/models/{ref}"]["get"]["parameters"] if p["name"] == "ref")
    patterns = {
        ref_parameter["schema"]["pattern"],
        *(
            option["pattern"]
            for name in ("PredictForm", "PredictJSON")
            for option in schemas[name]["properties"]["model"].get("anyOf", [schemas[name]["properties"]["model"]])
            if "pattern" in option
        ),
    }
    assert patterns == {MODEL_REF_PATTERN}
    assert PredictForm.model_fields["model"].metadata[0].pattern == MODEL_REF_PATTERN


# --- item 6: details a client reads ----------------------------------------------------------------------------


def test_unknown_model_lists_name_at_version_on_every_endpoint(client, png):
    from_predict = error_of(client.post(PREDICT, json={"image": "aGVsbG8=", "model": "nope"}), 404, "unknown_model")
    from_form = error_of(
        client.post(PREDICT, data={"file": (io.BytesIO(png), "a.png"), "model": "nope"}), 404, "unknown_model"
    )
    from_models = error_of(client.get("/api/v1/models/nope"), 404, "unknown_model")
    available = from_models["details"]["available"]
    assert from_predict["details"]["available"] == from_form["details"]["available"] == available
    assert "plus@1.0+local" in available and "digits@1.0" in available
    assert all("@" in ref for ref in available) and not any(ref.startswith("broken") for ref in available)


def test_payload_too_large_names_its_limit_in_details(home, png):
    client = create_app({"home": str(home), "max_upload_mb": 0.01, "log_level": "WARNING"}).test_client()
    limit = int(0.01 * 1024 * 1024)
    big = io.BytesIO(bytes(20_000))
    error = error_of(
        client.post(PREDICT, data={"file": (big, "big.png")}, content_type="multipart/form-data"),
        413,
        "payload_too_large",
    )
    assert error["details"]["limit"] == limit
    blob = base64.b64encode(b"\x89PNG" + bytes(6000)).decode()
    error = error_of(client.post(PREDICT, json={"images": [blob, blob]}), 413, "payload_too_large")
    assert error["details"]["limit"] == limit


def test_operations_that_take_a_key_say_so_even_before_keys_are_configured(client):
    body = document(client)
    keyed = {
        ("post", "/api/v1/predict"),
        ("post", "/api/v1/convert"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/history"),
    }
    for method, path in keyed:
        security = body["paths"][path][method]["security"]
        assert {"apiKeyBearer": []} in security and {"apiKeyHeader": []} in security, (method, path)
        assert {} in security, "no keys configured: anonymous calls are allowed too"
    used = {
        name
        for item in body["paths"].values()
        for op in item.values()
        for need in op.get("security", [])
        for name in need
    }
    assert used == set(body["components"]["securitySchemes"])
    assert "security" not in body["paths"]["/api/v1/health"]["get"]


def test_detections_document_their_class_index(client):
    detection = document(client)["components"]["schemas"]["Detection"]
    assert "index" in detection["properties"]
    assert detection["properties"]["index"]["anyOf"][0]["minimum"] == 0


def test_readme_says_what_predict_many_returns():
    lines = README.read_text().splitlines()
    at = next(index for index, line in enumerate(lines) if "api.predict_many(" in line)
    said = lines[at - 1] + lines[at]  # the call and the comment line above it
    assert "PredictResponse" in said and "ItemResult | ItemError each" not in said


def test_predict_success_row_names_its_own_switch(client):
    body = document(client)
    predict = body["paths"]["/api/v1/predict"]["post"]["responses"]["200"]["description"]
    convert = body["paths"]["/api/v1/convert"]["post"]["responses"]["200"]["description"]
    assert "`return`" in predict and "`response`" not in predict
    assert "`response`" in convert and "`return`" not in convert
    page = client.get("/docs").get_data(as_text=True)
    start = page.index('id="op-predict"')
    section = page[start : page.index("<section", start)]
    row = re.search(r"<tr><td><code>200</code></td><td>(.*?)</td>", section)
    assert row and "<code>return</code>" in row[1] and "<code>response</code>" not in row[1]


def test_failed_plugins_list_nulls_and_their_error(client):
    listed = ModelsResponse.model_validate(client.get("/api/v1/models").get_json())
    broken = next(model for model in listed.models if model.name == "broken")
    assert broken.state == "failed" and "this plugin does not import" in broken.error
    assert broken.input_size is None and broken.input_mode is None and broken.task is None
    assert broken.version is None and broken.labels == [] and broken.mean == [] and broken.std == []
    detail = client.get("/api/v1/models/broken").get_json()
    assert detail["input_size"] is None and detail["input_mode"] is None and detail["task"] is None


def test_fields_are_validated_before_the_file_count(client, png):
    files = [(io.BytesIO(png), f"{index}.png") for index in range(6)]  # max_files is 5
    error = error_of(
        client.post(PREDICT, data={"file": files, "fit": "sideways"}, content_type="multipart/form-data"),
        422,
        "validation_error",
    )
    assert error["details"][0]["loc"] == ["fit"]


@pytest.mark.parametrize("filename", ["数字.png", "café crème.png"])
def test_content_disposition_keeps_a_non_ascii_name(client, filename):
    image = encode(Image.new("RGB", (16, 16), (10, 200, 30)))
    predicted = client.post(
        PREDICT,
        data={"file": (io.BytesIO(image), filename), "model": "edges", "return": "image"},
        content_type="multipart/form-data",
    )
    converted = client.post(
        "/api/v1/convert", data={"file": (io.BytesIO(image), filename)}, content_type="multipart/form-data"
    )
    stem = filename.rsplit(".", 1)[0].replace(" ", "_")
    for response, label in ((predicted, "edges"), (converted, "converted")):
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        header = response.headers["Content-Disposition"]
        header.encode("latin-1")  # a header must stay latin-1: the plain filename is the ASCII fallback
        assert f"filename*=UTF-8''{quote(f'{stem}-{label}.png')}" in header, header
        assert re.search(r'filename="[A-Za-z0-9._+-]+"', header), header
