"""POST /api/v1/convert and the /tools page, through the flaskr-style `client` fixture."""

from __future__ import annotations

import base64
import io
import json

import imaging_samples as S
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from ai_service.imaging.io import decode_image
from ai_service.imaging.ops import apply_operations
from ai_service.schemas.convert import ConvertOptions

URL = "/api/v1/convert"


def post(client, data: bytes, operations=None, filename: str = "upload.png", **fields):
    form = {"file": (io.BytesIO(data), filename), **fields}
    if operations is not None:
        form["operations"] = operations if isinstance(operations, str) else json.dumps(operations)
    return client.post(URL, data=form, content_type="multipart/form-data")


def png(arr: np.ndarray) -> bytes:
    return S.encode(arr, "PNG")


def test_no_operations_returns_png_of_same_pixels(client) -> None:
    photo = S.sample_images()["chelsea"]
    r = post(client, S.encode(photo, "JPEG", quality=95), filename="cat.jpg")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert 'filename="cat-converted.png"' in r.headers["Content-Disposition"]
    assert np.abs(np.asarray(decode_image(r.data)).astype(int) - photo).mean() < 3


def test_pipeline_color_key_resize_gray(client) -> None:
    arr = np.full((40, 80, 3), 255, np.uint8)
    arr[10:30, 10:30] = (200, 30, 30)
    ops = [
        {"op": "color_key", "color": "#ffffff", "tolerance": 5},
        {"op": "resize", "width": 40, "height": 40, "fit": "letterbox", "filter": "bilinear", "pad_color": None},
        {"op": "to_gray", "weights": "bt709"},
    ]
    r = post(client, png(arr), ops)
    assert r.status_code == 200, r.get_json()
    out = Image.open(io.BytesIO(r.data))
    assert out.size == (40, 40) and out.mode == "LA"
    a = np.asarray(out)
    assert a[0, 0, 1] == 0 and a[20, 20, 1] == 0  # padding and keyed-out white are transparent
    assert a[20, 10, 1] == 255 and abs(int(a[20, 10, 0]) - round(0.2126 * 200 + 0.7152 * 30 + 0.0722 * 30)) <= 2
    assert r.headers["X-Image-Width"] == "40" and r.headers["X-Image-Mode"] == "LA"


def test_flatten_and_jpeg_output(client) -> None:
    rgba = S.photo_rgba()
    r = post(client, png(rgba), [{"op": "flatten_alpha", "background": [0, 0, 255]}], format="jpeg", quality="95")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    out = np.asarray(Image.open(io.BytesIO(r.data)))
    assert out.shape == rgba[..., :3].shape and abs(int(out[0, 0, 2]) - 255) <= 8 and out[0, 0, 0] <= 8


def test_colorspace_and_webp(client) -> None:
    photo = S.sample_images()["astronaut"]
    r = post(client, png(photo), [{"op": "colorspace", "space": "hsv"}], format="webp", quality="100")
    assert r.status_code == 200 and r.mimetype == "image/webp"
    import cv2

    assert np.array_equal(np.asarray(decode_image(r.data)), cv2.cvtColor(photo, cv2.COLOR_RGB2HSV))


def test_json_response_with_data_url_and_geometry(client) -> None:
    r = post(
        client,
        png(S.random_rgb(30, 60)),
        [{"op": "resize", "width": 32, "height": 32, "fit": "letterbox"}],
        response="json",
    )
    assert r.status_code == 200 and r.is_json
    body = r.get_json()
    assert (
        body["width"] == 32
        and body["format"] == "png"
        and body["source"] == {"format": "png", "width": 60, "height": 30}
    )
    assert body["geometry"]["padding"] == [0, 8, 0, 8] and body["operations"][0]["filter"] == "lanczos"
    prefix = "data:image/png;base64,"
    assert body["data_url"].startswith(prefix)
    assert decode_image(base64.b64decode(body["data_url"][len(prefix) :])).size == (32, 32)
    accept = client.post(
        URL, data={"file": (io.BytesIO(png(S.random_rgb(4, 4))), "a.png")}, headers={"Accept": "application/json"}
    )
    assert accept.is_json and accept.get_json()["width"] == 4


def test_resize_one_side_keeps_aspect_and_svg_is_rasterised_at_target(client) -> None:
    r = post(client, png(S.random_rgb(30, 60)), [{"op": "resize", "width": 20}], response="json")
    assert (r.get_json()["width"], r.get_json()["height"]) == (20, 10)
    svg = post(client, S.SVG_OK, [{"op": "resize", "width": 400, "height": 200}], filename="x.svg", response="json")
    assert svg.status_code == 200 and svg.get_json()["source"]["format"] == "svg" and svg.get_json()["width"] == 400


def test_download_attachment(client) -> None:
    r = post(client, png(S.random_rgb(4, 4)), download="true", filename="../../etc/pass wd.png")
    assert r.headers["Content-Disposition"] == 'attachment; filename="pass_wd-converted.png"'


@pytest.mark.parametrize(
    ("operations", "fields", "parameter"),
    [
        ("not json", {}, "operations"),
        ([{"op": "blur"}], {}, "operations[0].op"),
        ([{"op": "resize"}], {}, "operations[0]"),
        ([{"op": "resize", "width": 0}], {}, "operations[0].width"),
        ([{"op": "resize", "width": "abc"}], {}, "operations[0].width"),
        ([{"op": "resize", "width": 10, "fit": "zoom"}], {}, "operations[0].fit"),
        ([{"op": "resize", "width": 10, "filter": "hamming"}], {}, "operations[0].filter"),
        ([{"op": "resize", "width": 8000, "height": 8000}], {}, "operations[0]"),
        ([{"op": "to_gray"}, {"op": "color_key", "tolerance": -1}], {}, "operations[1].tolerance"),
        ([{"op": "color_key", "color": "notacolor"}], {}, "operations[0].color"),
        ([{"op": "flatten_alpha", "bg": "#fff"}], {}, "operations[0].bg"),
        ([{"op": "colorspace", "space": "cmyk"}], {}, "operations[0].space"),
        ([{"op": "to_gray", "keep_alpha": "maybe"}], {}, "operations[0].keep_alpha"),
        ([{"op": "to_gray"}] * 21, {}, "operations"),
        ("[1]", {}, "operations[0]"),
        (None, {"format": "gif"}, "format"),
        (None, {"quality": "0"}, "quality"),
        (None, {"quality": "high"}, "quality"),
        (None, {"response": "xml"}, "response"),
    ],
)
def test_bad_parameters_are_4xx_naming_the_parameter(client, operations, fields, parameter) -> None:
    r = post(client, png(S.random_rgb(8, 8)), operations, **fields)
    assert r.status_code == 422 and r.is_json
    error = r.get_json()["error"]
    assert error["code"] == "validation_error" and len(error["details"]) == 1, error
    assert parameter_path(error["details"][0]["loc"]) == parameter, error
    assert parameter in error["message"]


def parameter_path(loc: list) -> str:
    """["operations", 0, "width"] -> "operations[0].width", as the error message spells it."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def test_output_size_over_pixel_budget_after_aspect(home) -> None:
    from ai_service import create_app

    client = create_app({"TESTING": True, "home": str(home), "max_pixels": 10_000}).test_client()
    r = post(client, png(S.random_rgb(10, 100)), [{"op": "resize", "height": 99}])
    assert r.status_code == 422 and r.get_json()["error"]["details"][0]["loc"] == ["operations", 0, "width"]


def test_missing_file_and_bad_images(client) -> None:
    r = client.post(URL, data={"operations": "[]"}, content_type="multipart/form-data")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "missing_file"
    r = post(client, b"definitely not an image", filename="photo.png")
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_format"
    r = post(client, S.png_header_only_bomb())
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "image_too_large"
    r = post(client, S.SVG_XXE, filename="x.svg")
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "unsafe_image"
    r = post(client, b"")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "empty_file"


# ---------------------------------------------------------------- ops module directly


def test_parse_and_apply_operations_directly() -> None:
    options = ConvertOptions.model_validate(
        {"operations": '[{"op": "resize", "width": "16", "height": 8.0, "fit": "crop"}, {"op": "to_gray"}]'},
        context={"max_pixels": 1000},
    )
    ops = [op.model_dump() for op in options.operations]
    assert ops[0]["width"] == 16 and ops[0]["height"] == 8
    result = apply_operations(Image.fromarray(S.random_rgb(20, 20)), ops, max_pixels=1000)
    assert result.image.size == (16, 8) and result.image.mode == "L" and result.geometry["mode"] == "crop"
    assert (options.format, options.quality) == ("png", 90)
    assert ConvertOptions.model_validate({"format": "JPG"}).format == "jpeg"
    with pytest.raises(ValidationError) as info:
        ConvertOptions.model_validate({"operations": '[{"op": "resize", "width": 2.5}]'})
    assert info.value.errors()[0]["loc"] == ("operations", 0, "resize", "width")


# ---------------------------------------------------------------- web page


def test_tools_page_renders_and_converts_without_javascript(client) -> None:
    page = client.get("/tools")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="tools-form"' in html and "tools.js" in html and "<script>" not in html
    data = {
        "file": (io.BytesIO(png(np.full((30, 40, 3), 255, np.uint8))), "white.png"),
        "key_enabled": "1",
        "key_color": "#ffffff",
        "key_tolerance": "3",
        "width": "20",
        "fit": "stretch",
        "format": "png",
    }
    r = client.post("/tools", data=data, content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'download="white-converted.png"' in html and "20×15" in html
    url = html.split('id="tools-download" href="', 1)[1].split('"', 1)[0]
    out = decode_image(base64.b64decode(url.split(",", 1)[1]))
    assert out.mode == "RGBA" and np.asarray(out)[..., 3].max() == 0


def test_tools_page_shows_errors(client) -> None:
    r = client.post(
        "/tools",
        data={"file": (io.BytesIO(png(S.random_rgb(8, 8))), "a.png"), "width": "-1"},
        content_type="multipart/form-data",
    )
    assert r.status_code == 422 and "operations[0].width" in r.get_data(as_text=True)
    r = client.post("/tools", data={"file": (io.BytesIO(b"GIF89a junk"), "a.gif")}, content_type="multipart/form-data")
    assert r.status_code == 422 and "corrupt_image" in r.get_data(as_text=True)
    r = client.post("/tools", data={"operations": '[{"op": "to_gray"}]'}, content_type="multipart/form-data")
    assert r.status_code == 400 and "missing_file" in r.get_data(as_text=True)
    assert "Tools" in client.get("/").get_data(as_text=True)


def test_reduced_decoding_geometry_refers_to_the_original(client) -> None:
    """A big JPEG is decoded at 1/8 scale for a small resize, yet the geometry maps to the uploaded pixels."""
    data = S.encode(S.smooth_photo(1600, 2400), "JPEG", quality=90)
    ops = [{"op": "resize", "width": 150, "height": 150, "fit": "letterbox"}]
    body = post(client, data, ops, response="json").get_json()
    assert body["source"] == {"format": "jpeg", "width": 2400, "height": 1600}
    geo = body["geometry"]
    assert geo["src_size"] == [2400, 1600] and geo["content_box"] == [0, 25, 150, 125]
    assert geo["scale_x"] == pytest.approx(150 / 2400) and geo["crop_box"] == [0.0, 0.0, 2400.0, 1600.0]
    decoded = decode_image(data, target_size=(150, 150))
    assert decoded.size == (300, 200) and decoded.info["source_size"] == (2400, 1600)
    rotated = decode_image(S.jpeg_exif(S.smooth_photo(160, 240), 6), target_size=(10, 10))
    assert rotated.info["source_size"] == (160, 240) and rotated.size == (20, 30)
