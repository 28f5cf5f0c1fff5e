"""End to end through ai_service.client.Client against a live server on a free loopback port."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import digit_variants
from live_server import serve
from PIL import Image

from ai_service import create_app, errors
from ai_service.client import Client, ServiceError, decode_data_url
from ai_service.schemas import ItemError, ItemResult


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = create_app(
        {
            "TESTING": True,
            "home": str(tmp_path_factory.mktemp("client") / "home"),
            "log_level": "WARNING",
            "log_to_file": False,
        }
    )
    with serve(app) as base:
        yield app, base


@pytest.fixture
def client(server) -> Client:
    return Client(server[1], timeout=30)


@pytest.fixture(scope="module")
def sevens(digits_split) -> dict[str, bytes]:
    index = int(list(digits_split.test_labels).index(7))
    return {name: data for name, (data, _) in digit_variants(digits_split.test_images[index]).items()}


def label_of(result) -> str:
    return result.predictions[0].label


def test_predict_accepts_a_path_bytes_a_file_and_a_pil_image(client, sevens, tmp_path):
    path = tmp_path / "seven.png"
    path.write_bytes(sevens["gray.png"])
    inputs = [
        path,
        str(path),
        sevens["color.jpg"],
        io.BytesIO(sevens["alpha.png"]),
        Image.open(io.BytesIO(sevens["inverted.png"])),
    ]
    for number, image in enumerate(inputs):
        response = client.predict(image, model="digits", top_k=2)
        [result] = response.results
        assert isinstance(result, ItemResult) and label_of(result) == "7" and len(result.predictions) == 2
        assert response.model == "digits"
        if number == 1:  # the same bytes as the Path before it: answered by the result cache
            assert response.cached and result.cached and response.timing_ms.forward == 0
        else:
            assert not response.cached and response.timing_ms.forward > 0
    assert client.predict(path).results[0].filename == "seven.png"


def test_options_reach_the_server(client, sevens):
    response = client.predict(
        sevens["large-inverted.jpg"], model="digits@1.0", top_k=1, fit="letterbox", resample="bicubic"
    )
    assert response.version == "1.0" and label_of(response.results[0]) == "7"
    assert response.results[0].geometry.original_size == [1200, 1200]


def test_predict_many_keeps_order_and_reports_bad_items(client, sevens):
    response = client.predict_many([sevens["gray.png"], b"not an image", sevens["color.jpg"]], model="digits")
    good, bad, other = response.results
    assert label_of(good) == label_of(other) == "7"
    assert isinstance(bad, ItemError) and bad.error.code == "unsupported_format" and bad.status == 415
    [alone] = client.predict_many([b"still not an image"]).results
    assert isinstance(alone, ItemError) and alone.index == 0


def test_a_bad_single_image_raises_service_error(client):
    with pytest.raises(ServiceError) as caught:
        client.predict(b"plain text", model="digits")
    error = caught.value
    assert (error.status, error.code) == (415, "unsupported_format")
    assert error.message and error.request_id
    with pytest.raises(ServiceError) as caught:
        client.predict(b"x", model="no-such-model")
    assert caught.value.code == "unknown_model" and "digits" in caught.value.message
    with pytest.raises(ServiceError) as caught:
        client.predict(b"x", top_k=0)
    assert caught.value.code == "validation_error" and caught.value.details[0]["loc"] == ["top_k"]


def test_image_outputs(client):
    source = Image.radial_gradient("L").convert("RGB").resize((40, 30))
    webp = client.predict_image(source, model="edges", output_format="webp")
    assert Image.open(io.BytesIO(webp)).format == "WEBP"
    response = client.predict(source, model="edges", output_format="jpeg")
    assert Image.open(io.BytesIO(decode_data_url(response.results[0].image))).size == (40, 30)


def test_models_and_health(client):
    names = {model.name for model in client.models()}
    assert {"digits", "edges"} <= names
    health = client.health()
    assert health.status == "ok" and health.device.type == "cpu"
    assert client.openapi()["openapi"] == "3.1.0"


def test_overloaded_is_retried_after_retry_after(server, client, sevens, monkeypatch):
    from ai_service.api import predict as predict_view

    real, calls = predict_view.predict, []

    def busy_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise errors.ServiceError("overloaded", "The queue is full.", headers={"Retry-After": "0"})
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_view, "predict", busy_once)
    assert label_of(client.predict(sevens["gray.png"]).results[0]) == "7" and len(calls) == 2
    calls.clear()
    with pytest.raises(ServiceError) as caught:
        Client(server[1], retries=0).predict(sevens["gray.png"])
    assert caught.value.status == 503 and caught.value.code == "overloaded"


def test_unreachable_server_is_a_service_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServiceError) as caught:
        Client(f"http://127.0.0.1:{port}", timeout=5).health()
    assert caught.value.status == 0 and caught.value.code == "unreachable"


def test_missing_file_path_fails_before_any_request(client, tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        client.predict(tmp_path / "missing.png")


def test_the_client_imports_neither_flask_nor_torch():
    """A caller's environment needs pydantic and Pillow, not the server's stack."""
    code = "import sys, ai_service.client; print(sorted({'torch', 'flask', 'numpy', 'cv2'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
