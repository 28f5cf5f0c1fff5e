"""The Gradio app (`gradio` extra): a tab per model of a real runtime, served on a free loopback port in this process
and driven through gradio_client, as a user of the demo's API would; every call lands in the history."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from browser_support import launch_for_screenshots, open_page, shot
from conftest import encode
from databases import free_port, in_ci
from PIL import Image
from sqlalchemy import text
from web_doubles import AlphaMaskModel, InkBoxModel, NegativeModel

from ai_service.cli import main
from ai_service.schemas import HistoryPageQuery
from ai_service.service.history.query import page
from ai_service.service.runtime import Runtime, build_runtime
from ai_service.settings import load_settings
from ai_service.storage.database import connect

if importlib.util.find_spec("gradio") is None:  # the `gradio` extra (requirements-dev.txt installs it)
    if in_ci():
        pytest.fail("gradio is not installed (CI=true: pip install -r requirements-dev.txt)", pytrace=False)
    pytest.skip("gradio is not installed: pip install 'ai-service[gradio]'", allow_module_level=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from ai_service.frontends.gradio_app import endpoint_name, launch, login  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEVEN = ROOT / "ai_service" / "models" / "builtin" / "examples" / "handwritten-7.png"
#: Small enough that a 200 x 200 upload is refused as the API would refuse it.
MAX_PIXELS = 150 * 150


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Runtime, str]]:
    """A runtime with the built-ins and the test doubles (one per task), its Gradio app on a free port."""
    home = tmp_path_factory.mktemp("gradio") / "home"
    settings = load_settings({"home": str(home), "log_to_file": False, "max_pixels": MAX_PIXELS})
    runtime = build_runtime(settings, run_jobs=False)
    for model in (NegativeModel(), InkBoxModel(), AlphaMaskModel()):
        runtime.registry.register(model)
    port = free_port()
    app = launch(runtime, "127.0.0.1", port, block=False)
    try:
        yield runtime, f"http://127.0.0.1:{port}/"
    finally:
        app.close()
        runtime.close()


@pytest.fixture(scope="module")
def client(served) -> Client:
    return Client(served[1], verbose=False, download_files=str(served[0].settings.home / "downloads"))


def history_rows(runtime: Runtime, count: int, **filters) -> list[dict]:
    """The newest rows once the background writer has written at least `count` of them."""
    deadline = time.monotonic() + 30
    while len(rows := page(runtime.history, HistoryPageQuery(**filters))["items"]) < count:
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    return rows


def rgba_with_ink(path: Path) -> Path:
    """A 60 x 40 transparent PNG with an opaque block at x 10..29, y 5..19."""
    image = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    image.paste((20, 20, 20, 255), (10, 5, 30, 20))
    path.write_bytes(encode(image))
    return path


def test_a_tab_per_model_with_its_examples(served):
    config = requests.get(served[1] + "config", timeout=10).json()
    tabs = [item["props"]["label"] for item in config["components"] if item["type"] == "tabitem"]
    assert tabs[0] == "digits" and {"edges", "upscale-2x", "negative", "inkbox", "alphamask"} <= set(tabs)
    examples = [item for item in config["components"] if item["type"] == "dataset"]
    assert "handwritten-7.png" in str(examples)
    endpoints = {dependency.get("api_name") for dependency in config["dependencies"]}
    assert {"predict_digits_1_0", "predict_inkbox_1", "predict_alphamask_1"} <= endpoints


def test_classification_answers_labels_with_confidences_and_is_recorded(served, client):
    runtime, _ = served
    label, response = client.predict(handle_file(str(SEVEN)), 4, api_name="/" + endpoint_name("digits@1.0"))
    assert label["label"] == "7" and len(label["confidences"]) == 4
    assert label["confidences"][0]["confidence"] > 0.5
    assert response["model"] == "digits" and response["result"]["predictions"][0]["label"] == "7"
    (row,) = [row for row in history_rows(runtime, 1, source="web") if row["id"] == response["result"]["history_id"]]
    assert row["model"] == "digits" and row["top1_label"] == "7" and row["client"] == "ip:127.0.0.1"
    assert row["filename"] == "handwritten-7.png"


def test_image_to_image_answers_an_image(client, tmp_path):
    source = rgba_with_ink(tmp_path / "ink.png")
    output, response = client.predict(handle_file(str(source)), api_name="/" + endpoint_name("negative@1"))
    with Image.open(output) as image:
        assert image.size == (60, 40) and image.getpixel((15, 10))[:3] == (235, 235, 235)
    assert response["task"] == "image-to-image" and "image" not in response["result"]


def test_detection_and_segmentation_annotate_the_upload(client, tmp_path):
    source = rgba_with_ink(tmp_path / "ink.png")
    boxes, response = client.predict(handle_file(str(source)), 0.5, api_name="/" + endpoint_name("inkbox@1"))
    assert [item["label"] for item in boxes["annotations"]] == ["ink 0.90"]
    unset, _ = client.predict(handle_file(str(source)), None, api_name="/" + endpoint_name("inkbox@1"))
    assert [item["label"] for item in unset["annotations"]] == ["ink 0.90"]  # no threshold: the model's own
    assert response["result"]["detections"][0]["box"] == [10.0, 5.0, 30.0, 20.0]
    with Image.open(boxes["image"]) as image:
        assert image.size == (60, 40) and image.format == "PNG"  # the upload, losslessly
    masks, _ = client.predict(handle_file(str(source)), api_name="/" + endpoint_name("alphamask@1"))
    (mask,) = masks["annotations"]
    assert mask["label"] == "ink"
    with Image.open(mask["image"]) as image:
        alpha = image.getchannel("A")
        assert image.size == (60, 40) and alpha.getpixel((15, 10)) > 0 and alpha.getpixel((50, 30)) == 0


def test_the_services_limits_apply_and_the_failure_is_recorded(served, client, tmp_path):
    runtime, _ = served
    big = tmp_path / "big.png"
    big.write_bytes(encode(Image.new("L", (200, 200), 255)))
    with pytest.raises(AppError, match="image_too_large"):
        client.predict(handle_file(str(big)), 3, api_name="/" + endpoint_name("digits@1.0"))
    rows = history_rows(runtime, 1, source="web", status="error")
    assert rows[0]["error_code"] == "image_too_large" and rows[0]["filename"] == "big.png"


def test_ai_service_gradio_serves_until_stopped_and_writes_its_rows(tmp_path):
    """The command: the models --model names, uploads under the home, and on SIGTERM the queued rows written."""
    home, port = tmp_path / "home", free_port()
    command = [sys.executable, "-m", "ai_service.cli", "gradio", "--port", str(port), "--home", str(home)]
    log = (tmp_path / "gradio.log").open("w+")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AI_SERVICE_", "GRADIO_"))}
    process = subprocess.Popen(command + ["--model", "digits"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"exited {process.returncode}"
            try:
                if requests.get(base + "config", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "Gradio did not answer within 120 s"
            time.sleep(0.5)
        config = requests.get(base + "config", timeout=10).json()
        assert [item["props"]["label"] for item in config["components"] if item["type"] == "tabitem"] == ["digits"]
        client = Client(base, verbose=False, download_files=False)
        label, _ = client.predict(handle_file(str(SEVEN)), 3, api_name="/predict_digits_1_0")
        assert label["label"] == "7"
        assert any((home / "var" / "gradio").rglob("handwritten-7.png")), "the upload is not under the home"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        log.seek(0)
        output = log.read()
    assert code == 0, output
    engine = connect(f"sqlite:///{home / 'var' / 'ai_service.db'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT model, source, top1_label FROM predictions")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("digits", "web", "7")]


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


def test_in_a_browser_an_example_runs_and_nothing_is_fetched_from_elsewhere(served, browser):
    """The page a person sees: click digits' example, then Predict; every request stays on the loopback server."""
    context, page = open_page(browser, served[1], None)
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or request.url.split(":")[0]))
    try:
        page.goto(served[1])
        page.get_by_role("tab", name="digits", exact=True).wait_for()
        page.locator(".gallery-item").first.click()  # digits' first example, handwritten-7.png
        page.get_by_role("button", name="Predict").first.click()
        page.get_by_test_id("label-output-value").first.wait_for()
        assert page.get_by_test_id("label-output-value").first.inner_text().strip().splitlines()[0] == "7"
        shot(page, "gradio-digits")
        assert hosts <= {"127.0.0.1", "data", "blob"}, hosts
    finally:
        context.close()


def test_with_api_keys_the_app_asks_for_one():
    assert login(load_settings({}).security) is None  # no keys: open, as the API is
    check = login(load_settings({"api_keys": "k1,k2", "admin_token": "admin"}).security)
    assert check("anyone", "k2") and check("", "admin")
    assert not check("k1", "wrong") and not check("anyone", "")


def test_a_bad_setting_or_model_is_one_line(monkeypatch, capsys, tmp_path):
    for name, value in {"GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}.items():
        monkeypatch.setenv(name, value)  # what the command sets is undone afterwards
    monkeypatch.setenv("AI_SERVICE_WORKERS", "-3")
    assert main(["gradio", "--home", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("ai-service gradio: setting workers (AI_SERVICE_WORKERS)")
    monkeypatch.delenv("AI_SERVICE_WORKERS")
    assert main(["gradio", "--home", str(tmp_path), "--model", "nosuchmodel"]) == 2
    assert "ai-service gradio: No model named 'nosuchmodel'" in capsys.readouterr().err
