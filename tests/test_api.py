import io

import pytest
from conftest import digit_variants, encode
from PIL import Image


def post_file(client, data: bytes, filename: str = "digit.png", **form):
    return client.post(
        "/api/v1/predict", data={"file": (io.BytesIO(data), filename), **form}, content_type="multipart/form-data"
    )


@pytest.fixture
def seven(digits_split):
    index = int(list(digits_split.test_labels).index(7))
    return digit_variants(digits_split.test_images[index])


def test_predict_returns_the_documented_shape(client, seven):
    response = post_file(client, seven["gray.png"][0])
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == "digits" and body["version"] == "1.0"
    [result] = body["results"]  # one entry per input, also for a single file
    assert result["index"] == 0 and result["filename"] == "digit.png"
    assert result["predictions"][0]["label"] == "7" and len(result["predictions"]) == 3
    assert result["predictions"][0]["score"] >= result["predictions"][1]["score"]
    assert {"decode", "preprocess", "queue", "forward", "postprocess", "total"} <= set(body["timing_ms"])


@pytest.mark.parametrize("variant", ["gray.png", "inverted.png", "color.jpg", "alpha.png", "large-inverted.jpg"])
def test_predict_real_uploads(client, seven, variant):
    data, _ = seven[variant]
    body = post_file(client, data, variant, top_k="1").get_json()
    assert [p["label"] for p in body["results"][0]["predictions"]] == ["7"]


def test_several_files_give_one_result_each_in_order(client, seven):
    response = client.post(
        "/api/v1/predict",
        data={"file": [(io.BytesIO(seven["gray.png"][0]), "a.png"), (io.BytesIO(b"not an image"), "b.png")]},
    )
    assert response.status_code == 200
    first, second = response.get_json()["results"]
    assert first["predictions"][0]["label"] == "7" and second["error"]["code"] == "unsupported_format"


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.data
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body


def test_missing_file(client):
    form = client.post("/api/v1/predict", data={"model": "digits"}, content_type="multipart/form-data")
    assert_error(form, 400, "missing_file")  # urlencoded (no file possible) is 415: tests/test_request_parsing.py
    body = assert_error(
        client.post("/api/v1/predict", data={"image": (io.BytesIO(b"x"), "a.png")}), 400, "missing_file"
    )
    assert "image" in body["error"]["message"]


def test_empty_file(client):
    assert_error(post_file(client, b""), 400, "empty_file")


def test_text_file_named_png(client):
    assert_error(post_file(client, b"hello, I am text\n" * 10, "evil.png"), 415, "unsupported_format")


def test_truncated_png(client, seven):
    data = seven["gray.png"][0]
    response = post_file(client, data[: len(data) // 2])
    assert response.status_code in (400, 422) and response.get_json()["error"]["message"]


def test_unknown_model(client, seven):
    body = assert_error(post_file(client, seven["gray.png"][0], model="resnet9000"), 404, "unknown_model")
    assert "digits" in body["error"]["message"]


@pytest.mark.parametrize("top_k", ["zero", "0", "-3", "1e9"])
def test_bad_top_k(client, seven, top_k):
    body = assert_error(post_file(client, seven["gray.png"][0], top_k=top_k), 422, "validation_error")
    assert [issue["loc"] for issue in body["error"]["details"]] == [["top_k"]]


def test_upload_too_large_is_413_json(home, seven):
    from ai_service import create_app

    client = create_app({"home": str(home), "max_upload_mb": 0.01}).test_client()
    body = assert_error(post_file(client, b"\x89PNG" + b"0" * 20_000), 413, "payload_too_large")
    assert "0.01 MB" in body["error"]["message"]


def test_too_many_pixels_is_413(home):
    from ai_service import create_app

    client = create_app({"home": str(home), "max_pixels": 10_000}).test_client()
    assert_error(post_file(client, encode(Image.new("L", (200, 200)))), 413, "image_too_large")


def test_wrong_method_and_unknown_path_are_json(client):
    assert_error(client.get("/api/v1/predict"), 405, "method_not_allowed")
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_unexpected_exception_is_a_json_500_without_traceback(app, client, seven):
    model = app.extensions["ai_service"].registry.get("digits")

    def explode(batch):
        raise RuntimeError("secret internal detail")

    model.forward = explode
    body = assert_error(post_file(client, seven["gray.png"][0]), 500, "internal_error")
    assert "secret" not in str(body) and "Traceback" not in str(body)


def test_models_endpoint_lists_metadata(client):
    models = client.get("/api/v1/models").get_json()["models"]
    digits = next(m for m in models if m["name"] == "digits")
    assert digits["task"] == "classification" and digits["input_size"] == [28, 28]
    assert digits["input_mode"] == "L" and digits["labels"] == [str(i) for i in range(10)]
    assert digits["state"] == "registered"


def test_health_lists_loaded_models(client, seven):
    assert client.get("/api/v1/health").get_json()["loaded_models"] == []
    post_file(client, seven["gray.png"][0])
    body = client.get("/api/v1/health").get_json()
    assert body["loaded_models"] == ["digits"] and body["version"]


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/api/v1/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/api/v1/health", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert len(generated) == 32 and generated != "bad id"


def test_upload_page_renders(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'name="file"' in html and "digits" in html
    assert "http://" not in html and "https://" not in html  # no CDN


def test_form_post_without_javascript(client, seven):
    page = client.post("/predict", data={"file": (io.BytesIO(seven["alpha.png"][0]), "seven.png"), "model": "digits"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "data:image/png;base64," in html and "seven.png" in html
    assert '<span class="label">7</span>' in html


def test_form_errors_are_friendly_html(client):
    page = client.post("/predict", data={"file": (io.BytesIO(b"plain text"), "notes.txt")})
    assert page.status_code == 200  # the per-file error is shown on the result page
    assert "not an image" in page.get_data(as_text=True).lower() or "unsupported" in page.get_data(as_text=True).lower()
    missing = client.post("/predict", data={})
    assert missing.status_code == 400 and "text/html" in missing.content_type
    assert "multipart/form-data field named" in missing.get_data(as_text=True)
    not_found = client.get("/no-such-page")
    assert not_found.status_code == 404 and "text/html" in not_found.content_type
    assert "Traceback" not in not_found.get_data(as_text=True)
