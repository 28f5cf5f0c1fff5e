"""Clients generated from the live /api/v1/openapi.json import and handle every documented response (issue 20, item 7).

openapi-python-client 0.29.1 builds a whole client (one module per operation); datamodel-code-generator builds the
pydantic models a hand-written client parses with; openapi-generator 7.26.0 (the `openapi-generator-cli` wheel: its
jar, run by the Java runtime installed here and in CI) builds its `python` client. All run on the document a live
server answers with, write into tmp_path only, and the results talk to that same live server: predict multipart and
JSON, predict image, convert image, an error. openapi-generator's client sends the first content type an operation
lists as its body's; each operation has one (predict/predictJson, createJob/createJobJson), so it sends the right one.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from databases import unavailable

from ai_service import create_app
from ai_service.http.openapi import SAMPLE_PNG_BASE64
from tests.live_server import serve

SAMPLE_PNG = base64.b64decode(SAMPLE_PNG_BASE64)
IMAGE_MAGIC = (b"\x89PNG", b"RIFF", b"\xff\xd8\xff")
GENERATOR_SECONDS = 180


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A live server (threaded werkzeug on a free loopback port) and the document it answers with, saved to disk."""
    home = tmp_path_factory.mktemp("home")
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "log_to_file": False})
    with serve(app) as base:
        document = requests.get(f"{base}/api/v1/openapi.json", timeout=30).json()
        path = tmp_path_factory.mktemp("document") / "openapi.json"
        path.write_text(json.dumps(document))
        yield base, path


def generate(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    """Run a generator with the venv's tools on PATH (openapi-python-client formats with ruff); fail with its output."""
    bin_dir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=GENERATOR_SECONDS, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def import_fresh(root: Path, package: str):
    """Import `package` from `root`, whatever an earlier test imported under that name."""
    for name in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(root))


@pytest.fixture(scope="module")
def opc(live, tmp_path_factory):
    """The openapi-python-client 0.29.1 client for the live document, every module imported."""
    _, document = live
    root = tmp_path_factory.mktemp("opc")
    done = generate(
        root,
        str(Path(sys.executable).parent / "openapi-python-client"),
        "generate",
        "--path",
        str(document),
        "--meta",
        "none",
        "--output-path",
        str(root / "ai_generated_client"),
    )
    package = import_fresh(root, "ai_generated_client")
    sys.path.insert(0, str(root))
    try:
        broken = {}
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            try:
                importlib.import_module(module.name)
            except Exception as error:  # noqa: BLE001 - every failure is reported at once
                broken[module.name] = f"{type(error).__name__}: {error}"
    finally:
        sys.path.remove(str(root))
    return package, broken, done.stdout + done.stderr


def operation(package, tag: str, name: str):
    """The generated module of one operation (api/<tag>/<snake_case operationId>.py)."""
    return importlib.import_module(f"{package.__name__}.api.{tag}.{name}")


def sample_file(package):
    from_types = importlib.import_module(f"{package.__name__}.types")
    return from_types.File(payload=io.BytesIO(SAMPLE_PNG), file_name="seven.png", mime_type="image/png")


def form(package, model, fields: dict, many: bool = False):
    """A generated multipart body from plain values (from_dict turns strings into the generated enums), with the
    sample image as its `file` part (a list of one when the part repeats)."""
    body = model.from_dict({**fields, "file": [SAMPLE_PNG] if many else SAMPLE_PNG})
    body.file = [sample_file(package)] if many else sample_file(package)
    return body


def payload_bytes(parsed) -> bytes:
    """A generated binary response: File(payload=BytesIO) or plain bytes."""
    return parsed if isinstance(parsed, bytes) else parsed.payload.read()


def test_openapi_python_client_generates_without_dropping_a_response(opc):
    _, _, output = opc
    assert "response will be omitted" not in output, output
    assert "Unable to" not in output, output


def test_every_generated_module_imports(opc):
    _, broken, _ = opc
    assert broken == {}


def test_generated_client_predicts_multipart_and_json(opc, live):
    package, _, _ = opc
    client = package.Client(base_url=live[0], raise_on_unexpected_status=True, timeout=60)
    models = importlib.import_module(f"{package.__name__}.models")
    module = operation(package, "predict", "predict")
    answer = module.sync_detailed(client=client, body=form(package, models.PredictForm, {"model": "digits"}, many=True))
    assert answer.status_code == 200, answer.content
    assert isinstance(answer.parsed, models.PredictResponse)
    assert answer.parsed.results[0].predictions[0].label == "7"
    body = models.PredictJSON.from_dict({"model": "digits", "image": "data:image/png;base64," + SAMPLE_PNG_BASE64})
    answer = operation(package, "predict", "predict_json").sync_detailed(client=client, body=body)
    assert isinstance(answer.parsed, models.PredictResponse), answer.content
    assert answer.parsed.results[0].predictions[0].label == "7"


def test_generated_client_gets_the_predicted_image(opc, live):
    package, _, _ = opc
    client = package.Client(base_url=live[0], raise_on_unexpected_status=True, timeout=60)
    models = importlib.import_module(f"{package.__name__}.models")
    body = form(package, models.PredictImageForm, {"model": "edges", "output_format": "webp"})
    answer = operation(package, "predict", "predict_image").sync_detailed(client=client, body=body)
    assert answer.status_code == 200, answer.content
    assert payload_bytes(answer.parsed).startswith(IMAGE_MAGIC)


def test_generated_client_converts_to_an_image_and_to_json(opc, live):
    package, _, _ = opc
    client = package.Client(base_url=live[0], raise_on_unexpected_status=True, timeout=60)
    models = importlib.import_module(f"{package.__name__}.models")
    body = form(package, models.ConvertForm, {"operations": '[{"op": "to_gray"}]', "format": "webp"})
    answer = operation(package, "images", "convert").sync_detailed(client=client, body=body)
    assert answer.status_code == 200, answer.content
    assert payload_bytes(answer.parsed).startswith(b"RIFF")
    body = form(package, models.ConvertForm, {"operations": '[{"op": "to_gray"}]', "response": "json"})
    answer = operation(package, "images", "convert").sync_detailed(client=client, body=body)
    assert answer.status_code == 200, answer.content
    converted = models.ConvertResponse.from_dict(json.loads(payload_bytes(answer.parsed)))
    assert converted.width == 24


def test_generated_client_parses_an_error(opc, live):
    package, _, _ = opc
    client = package.Client(base_url=live[0], timeout=60)
    models = importlib.import_module(f"{package.__name__}.models")
    body = form(package, models.PredictForm, {"model": "no-such-model"}, many=True)
    answer = operation(package, "predict", "predict").sync_detailed(client=client, body=body)
    assert answer.status_code == 404
    assert isinstance(answer.parsed, models.ErrorResponse)
    assert answer.parsed.error.code == "unknown_model"


@pytest.fixture(scope="module")
def dcg(live, tmp_path_factory):
    """datamodel-code-generator's pydantic v2 models for the live document."""
    _, document = live
    root = tmp_path_factory.mktemp("dcg")
    generate(
        root,
        str(Path(sys.executable).parent / "datamodel-codegen"),
        "--input",
        str(document),
        "--input-file-type",
        "openapi",
        "--output-model-type",
        "pydantic_v2.BaseModel",
        "--formatters",
        "builtin",
        "--output",
        str(root / "ai_generated_models.py"),
    )
    return import_fresh(root, "ai_generated_models")


def test_datamodel_code_generator_models_parse_live_answers(dcg, live):
    base = live[0]
    files = {"file": ("seven.png", SAMPLE_PNG, "image/png")}
    answer = requests.post(f"{base}/api/v1/predict", files=files, data={"model": "digits"}, timeout=60)
    assert dcg.PredictResponse.model_validate(answer.json()).results[0].predictions[0].label == "7"
    image = {"model": "edges", "return": "image"}
    answer = requests.post(f"{base}/api/v1/predict", files=files, data=image, timeout=60)
    assert answer.status_code == 200 and answer.content.startswith(IMAGE_MAGIC)
    answer = requests.post(f"{base}/api/v1/convert", files=files, data={"format": "webp"}, timeout=60)
    assert answer.status_code == 200 and answer.content.startswith(b"RIFF")
    answer = requests.post(f"{base}/api/v1/convert", files=files, data={"response": "json"}, timeout=60)
    dcg.ConvertResponse.model_validate(answer.json())
    answer = requests.post(f"{base}/api/v1/predict", files=files, data={"model": "no-such-model"}, timeout=60)
    assert answer.status_code == 404
    code = dcg.ErrorResponse.model_validate(answer.json()).error.code
    assert getattr(code, "value", code) == "unknown_model"
    for name in ("ModelsResponse", "HealthResponse", "SystemResponse"):
        path = {"ModelsResponse": "models", "HealthResponse": "health", "SystemResponse": "system"}[name]
        getattr(dcg, name).model_validate(requests.get(f"{base}/api/v1/{path}", timeout=60).json())


def test_predict_image_is_predict_with_return_image_and_nothing_else(live):
    base = live[0]
    files = {"file": ("seven.png", SAMPLE_PNG, "image/png")}
    answer = requests.post(f"{base}/api/v1/predict/image", files=files, data={"model": "edges"}, timeout=60)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    assert answer.headers["X-Model"].startswith("edges@")
    refused = requests.post(
        f"{base}/api/v1/predict/image", files=files, data={"model": "edges", "return": "json"}, timeout=60
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error"
    assert [issue["loc"] for issue in refused.json()["error"]["details"]] == [["return"]]
    body = {"model": "edges", "image": SAMPLE_PNG_BASE64}
    assert requests.post(f"{base}/api/v1/predict/image", json=body, timeout=60).status_code == 415
    classifier = requests.post(f"{base}/api/v1/predict/image", files=files, data={"model": "digits"}, timeout=60)
    assert classifier.status_code == 422


@pytest.fixture(scope="module")
def oag(live, tmp_path_factory):
    """openapi-generator 7.26.0's python client for the live document, imported, and an ApiClient on the server."""
    if shutil.which("java") is None:  # .ci/run installs Java
        unavailable(
            "openapi-generator-cli runs a jar: no Java runtime on PATH (apt-get install default-jre-headless)",
            "client-generator",
        )
    base, document = live
    root = tmp_path_factory.mktemp("oag")
    done = generate(
        root,
        str(Path(sys.executable).parent / "openapi-generator-cli"),
        "generate",
        "-g",
        "python",
        "-i",
        str(document),
        "-o",
        str(root / "out"),
        "--package-name",
        "ai_oag_client",
    )
    assert "ERROR" not in done.stdout + done.stderr, done.stdout + done.stderr
    package = import_fresh(root / "out", "ai_oag_client")
    configuration = package.Configuration(host=base)
    with package.ApiClient(configuration) as client:
        yield package, client


def test_openapi_generator_client_predicts_multipart_and_json(oag):
    package, client = oag
    api = package.PredictApi(client)
    answer = api.predict(file=[("seven.png", SAMPLE_PNG)], model="digits", top_k=2)
    assert isinstance(answer, package.PredictResponse)
    assert answer.results[0].actual_instance.predictions[0].label == "7"
    body = package.PredictJSON(model="digits", image="data:image/png;base64," + SAMPLE_PNG_BASE64)
    answer = api.predict_json(body)
    assert isinstance(answer, package.PredictResponse)
    assert answer.results[0].actual_instance.predictions[0].label == "7"
    batch = api.predict_json(package.PredictJSON(model="digits", images=[SAMPLE_PNG_BASE64, "not base64!"]))
    assert len(batch.results) == 2


def test_openapi_generator_client_gets_images(oag):
    package, client = oag
    image = package.PredictApi(client).predict_image(
        file=("seven.png", SAMPLE_PNG), model="edges", output_format="webp"
    )
    assert isinstance(image, bytes) and image.startswith(b"RIFF")
    # the client's Accept prefers application/json, which /convert honours when `response` is not sent: say it
    convert = package.ImagesApi(client).convert
    converted = convert(
        file=("seven.png", SAMPLE_PNG), operations='[{"op": "to_gray"}]', format="webp", response="image"
    )
    assert isinstance(converted, bytes) and converted.startswith(b"RIFF")
    as_json = convert(file=("seven.png", SAMPLE_PNG), operations='[{"op": "to_gray"}]', response="json")
    assert package.ConvertResponse.from_json(as_json.decode()).width == 24


def test_openapi_generator_client_submits_jobs_multipart_and_json(oag):
    package, client = oag
    api = package.JobsApi(client)
    created = api.create_job(file=[("a.png", SAMPLE_PNG), ("b.png", SAMPLE_PNG)], model="digits")
    assert isinstance(created, package.JobCreated) and created.total == 2
    body = package.JobJSON(model="digits", images=[SAMPLE_PNG_BASE64], filenames=["seven.png"])
    created = api.create_job_json(body)
    assert isinstance(created, package.JobCreated) and created.total == 1
    assert api.get_job(created.id).id == created.id


def test_openapi_generator_client_raises_the_error_envelope(oag):
    package, client = oag
    with pytest.raises(package.ApiException) as caught:
        package.PredictApi(client).predict(file=[("seven.png", SAMPLE_PNG)], model="no-such-model")
    assert caught.value.status == 404
    assert package.ErrorResponse.from_json(caught.value.body).error.code == "unknown_model"
