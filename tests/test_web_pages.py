"""Server-rendered pages without a browser: the upload form, the no-JS result page per task, the status page."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from conftest import digit_variants, encode
from PIL import Image
from web_doubles import register_doubles

INLINE_CODE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=", re.IGNORECASE)


@pytest.fixture
def app(home):
    from ai_service import create_app

    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "log_to_file": False})
    register_doubles(app)
    return app


@pytest.fixture(scope="module")
def seven(digits_split):
    index = int(list(digits_split.test_labels).index(7))
    return digit_variants(digits_split.test_images[index])


def cutout() -> bytes:
    pixels = np.zeros((30, 40, 4), np.uint8)
    pixels[5:20, 10:30] = (200, 20, 20, 255)
    return encode(Image.fromarray(pixels, "RGBA"))


def data_url_image(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_upload_page_describes_models_and_options(client):
    html = client.get("/").get_data(as_text=True)
    for text in (
        'name="file"',
        "multiple",
        'id="model"',
        'value="digits"',
        "Handwritten digit",
        "input 28×28 L",
        'name="top_k"',
        'name="output_format"',
        'name="background"',
        'data-max-bytes="16777216"',
        'type="module"',
        "draw-panel",
    ):
        assert text in html, text
    assert 'value="negative" data-task="image-to-image"' in html


@pytest.mark.parametrize("path", ["/", "/status", "/status?fragment=1"])
def test_pages_have_no_inline_code_for_a_strict_csp(client, path):
    page = client.get(path)
    assert page.status_code == 200
    assert not INLINE_CODE.findall(page.get_data(as_text=True))


def test_static_scripts_are_served(client):
    for name in (
        "app.js",
        "api.js",
        "dom.js",
        "draw.js",
        "files.js",
        "history.js",
        "results.js",
        "status.js",
        "js-flag.js",
        "run-control.js",
        "camera.js",
        "editor.js",
        "examples.js",
        "api-snippets.js",
    ):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and "javascript" in response.content_type, name
        response.close()


def test_selected_model_survives_a_reload(client):
    html = client.get("/?model=negative").get_data(as_text=True)
    assert re.search(r'<option value="negative"[^>]*selected', html)
    assert "inverts colors" in html  # the description of the chosen model is rendered without JavaScript


def test_no_js_result_shows_request_id_and_timings(client, seven):
    page = client.post("/predict", data={"file": (io.BytesIO(seven["alpha.png"][0]), "seven.png"), "top_k": "5"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.count("<meter") == 5
    assert f"<code>{page.headers['X-Request-ID']}</code>" in html
    assert re.search(r"<dt>forward</dt><dd>[\d.]+ ms</dd>", html)


def test_no_js_several_files_with_one_bad(client, seven):
    page = client.post(
        "/predict",
        data={
            "file": [
                (io.BytesIO(seven["gray.png"][0]), "a.png"),
                (io.BytesIO(b"hello"), "notes.txt"),
                (io.BytesIO(seven["color.jpg"][0]), "c.jpg"),
            ]
        },
    )
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count('class="result-item"') == 2 and html.count('<li class="top"><span class="label">7</span>') == 2
    assert re.search(r"notes\.txt: The file is not an image", html)


def test_no_js_image_output_in_requested_format_on_a_background(client):
    page = client.post(
        "/predict",
        data={
            "file": (io.BytesIO(cutout()), "cut.png"),
            "model": "negative",
            "output_format": "webp",
            "quality": "100",
            "background_mode": "color",
            "background": "#00ff00",
        },
    )
    html = page.get_data(as_text=True)
    assert 'download="cut-negative.webp"' in html and "After · 40×30 WEBP" in html
    url = re.search(r'<a class="button primary" href="(data:image/webp;base64,[^"]+)"', html).group(1)
    image = data_url_image(url)
    assert image.getpixel((0, 0))[:3] == (0, 255, 0)  # transparent corner flattened onto the chosen color
    assert image.getpixel((20, 10))[:3] == (55, 235, 235)


def test_no_js_keeps_transparency_unless_a_color_is_chosen(client):
    html = client.post(
        "/predict", data={"file": (io.BytesIO(cutout()), "cut.png"), "model": "negative", "background": "#00ff00"}
    ).get_data(as_text=True)
    url = re.search(r'href="(data:image/png;base64,[^"]+)" download', html).group(1)
    assert data_url_image(url).getpixel((0, 0))[3] == 0


def test_no_js_detection_and_segmentation_drawn_over_the_input(client):
    html = client.post("/predict", data={"file": (io.BytesIO(cutout()), "cut.png"), "model": "inkbox"}).get_data(
        as_text=True
    )
    assert 'viewBox="0 0 40 30"' in html and re.search(
        r'<rect class="box box-0" x="10.0" y="5.0" width="20.0" height="15.0"', html
    )
    assert "<strong>ink</strong> 90.0%" in html
    html = client.post("/predict", data={"file": (io.BytesIO(cutout()), "cut.png"), "model": "alphamask"}).get_data(
        as_text=True
    )
    assert re.search(r'<img class="mask-overlay" src="data:image/png;base64,', html) and "Download mask" in html


def test_no_js_invalid_option_reenders_the_form_with_the_reason(client, seven):
    page = client.post("/predict", data={"file": (io.BytesIO(seven["gray.png"][0]), "a.png"), "top_k": "0"})
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and 'id="server-error"' in html and "top_k" in html and 'id="predict-form"' in html


def test_status_page_lists_device_and_models(client, seven):
    client.post("/api/v1/predict", data={"file": (io.BytesIO(seven["gray.png"][0]), "a.png")})
    html = client.get("/status").get_data(as_text=True)
    assert "cpu" in html and '<th scope="row">digits@1.0' in html and re.search(r"loaded</span>", html)
    assert "KiB" in html and 'href="/status"' in html and 'aria-current="page"' in html
    fragment = client.get("/status?fragment=1").get_data(as_text=True)
    assert "<html" not in fragment and "models-table" in fragment


def test_status_body_shows_gpu_memory(app):
    """The CUDA branch, rendered from a /api/v1/system body as a GPU machine reports it."""
    from flask import render_template

    gib = 1024**3
    gpu = {
        "device": "cuda:0",
        "type": "cuda",
        "name": "NVIDIA H100",
        "memory_allocated": 2 * gib,
        "memory_reserved": 3 * gib,
        "memory_total": 80 * gib,
    }
    system = {
        "version": "0.1.0",
        "pid": 1,
        "process_rss": 5 * gib,
        "device": gpu,
        "devices": [{"device": "cpu", "type": "cpu"}, gpu, {**gpu, "device": "cuda:1"}],
        "memory": {"loaded_models": 1, "models_bytes_on_device": gib, "budget_bytes": 40 * gib, "eviction": "lru"},
        "models": [
            {
                "name": "big",
                "key": "big@1",
                "task": "image-to-image",
                "state": "loaded",
                "default": True,
                "bytes_on_device": gib,
                "bytes_offloaded": 0,
                "parameters": 1_000_000,
                "loads": 1,
                "load_seconds": 2.5,
                "last_used": None,
                "in_use": 1,
            }
        ],
    }
    with app.test_request_context("/status"):
        html = render_template("_status_body.html", system=system, now=0.0)
    assert "NVIDIA H100" in html and "2.0 GiB allocated, 3.0 GiB reserved of 80.0 GiB" in html
    assert f'max="{80 * gib}" value="{3 * gib}"' in html and "budget 40.0 GiB" in html
    assert html.count('<meter id="gpu-') == 2 and "(1 in use)" in html and "1,000,000" in html and "2.50 s" in html


def test_a_model_that_failed_to_register_is_listed_but_not_selectable(app, client):
    app.extensions["ai_service"].registry.register_failure(
        "broken-plugin", "plugin:broken", "ImportError: no module named x"
    )
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'<option value="broken-plugin"[^>]* disabled>broken-plugin \(failed to load\)', html)
    assert "ImportError: no module named x" in html
