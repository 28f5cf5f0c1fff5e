"""The Tools page and POST /api/v1/convert run one pipeline: the same inputs give byte-identical images."""

from __future__ import annotations

import base64
import html
import io
import json

import imaging_samples as S
import numpy as np
import pytest

SVG_STRETCH = [{"op": "resize", "width": 40, "height": 40, "fit": "stretch"}]
OPERATIONS = {
    "stretch": SVG_STRETCH,
    "letterbox-gray": [{"op": "resize", "width": 24, "height": 32, "fit": "letterbox"}, {"op": "to_gray"}],
    "key-flatten": [
        {"op": "color_key", "color": "#ff0000", "tolerance": 10},
        {"op": "flatten_alpha", "background": "#00ff00"},
    ],
    "none": [],
}


def inputs() -> dict[str, tuple[bytes, str]]:
    """SVG, PSD, an EXIF-rotated JPEG and an RGBA PNG, with the names a browser would send."""
    return {
        "svg": (S.SVG_OK, "shape.svg"),
        "psd": (S.psd_layered()[0], "layers.psd"),
        "jpeg-exif": (S.jpeg_exif(S.quadrants(40, 60), orientation=6), "rotated.jpg"),
        "rgba-png": (S.encode(S.random_rgba(30, 20), "PNG"), "alpha.png"),
    }


def via_api(client, data: bytes, filename: str, operations: list, fmt: str) -> bytes:
    response = client.post(
        "/api/v1/convert",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(data), filename), "operations": json.dumps(operations), "format": fmt},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data()


def via_tools(client, data: bytes, filename: str, form: dict) -> bytes:
    """POST /tools without JavaScript and decode the data URL of the page's download link."""
    response = client.post(
        "/tools", content_type="multipart/form-data", data={"file": (io.BytesIO(data), filename), **form}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    url = html.unescape(page.split('id="tools-download" href="', 1)[1].split('"', 1)[0])
    return base64.b64decode(url.split(",", 1)[1])


@pytest.mark.parametrize("source", ["svg", "psd", "jpeg-exif", "rgba-png"])
@pytest.mark.parametrize("ops", list(OPERATIONS))
@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_tools_page_and_api_give_identical_bytes(client, source, ops, fmt):
    data, filename = inputs()[source]
    operations = OPERATIONS[ops]
    expected = via_api(client, data, filename, operations, fmt)
    assert via_tools(client, data, filename, {"operations": json.dumps(operations), "format": fmt}) == expected


@pytest.mark.parametrize("source", ["svg", "psd", "jpeg-exif", "rgba-png"])
def test_the_form_controls_match_the_same_operations_sent_to_the_api(client, source):
    """The page's own resize controls (no advanced JSON) decode with the same hints as the API: an SVG
    stretched to 40×40 is rasterized at the target, not rendered at its own size and resampled."""
    data, filename = inputs()[source]
    form = {
        "width": "40",
        "height": "40",
        "fit": "stretch",
        "filter": "lanczos",
        "pad_color": "#000000",
        "format": "png",
    }
    operations = [
        {"op": "resize", "width": 40, "height": 40, "fit": "stretch", "filter": "lanczos", "pad_color": "#000000"}
    ]
    from_page = via_tools(client, data, filename, form)
    assert from_page == via_api(client, data, filename, operations, "png")
    if source == "svg":
        from ai_service.imaging.io import decode_image

        pixels = np.asarray(decode_image(from_page))
        assert pixels.shape[:2] == (40, 40)
