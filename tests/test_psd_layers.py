"""PSD layers: the layer tree, single layers and the visible-layer composite, in the imaging library and through
POST /api/v1/psd/layers, /api/v1/convert and /api/v1/predict (`layer=`, `layers=visible`).

The documents are written here with psd-tools: groups, hidden layers and groups, partial opacity."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ai_service import create_app
from ai_service.imaging import errors
from ai_service.imaging.io import decode_image
from ai_service.imaging.psd import psd_layers
from tests.web_doubles import register_doubles

W, H = 60, 40
BLUE, RED, GREEN, YELLOW, MAGENTA, BLACK = (0, 0, 255), (255, 0, 0), (0, 255, 0), (255, 255, 0), (255, 0, 255), (0,) * 3


def layered_psd(stored: tuple[int, int, int] | None = None) -> bytes:
    """Background; group Shapes (Red, Green half at 50 %, a hidden Black); a hidden Yellow; a hidden group Top with
    a visible Magenta inside. `stored`: overwrite the flattened image Photoshop stores with one color."""
    from psd_tools import PSDImage

    psd = PSDImage.new("RGB", (W, H), color=(255, 255, 255))
    psd.create_pixel_layer(Image.new("RGB", (W, H), BLUE), name="Background")
    shapes = psd.create_group(name="Shapes")
    shapes.create_pixel_layer(Image.new("RGBA", (10, 10), (*RED, 255)), name="Red", top=2, left=3)
    green = Image.new("RGBA", (10, 8), (*GREEN, 255))
    shapes.create_pixel_layer(green, name="Green half", top=15, left=20, opacity=128)
    black = shapes.create_pixel_layer(Image.new("RGBA", (4, 4), (*BLACK, 255)), name="Black", top=30, left=40)
    black.visible = False
    yellow = psd.create_pixel_layer(Image.new("RGBA", (W, H), (*YELLOW, 255)), name="Yellow")
    yellow.visible = False
    top = psd.create_group(name="Top")
    top.create_pixel_layer(Image.new("RGBA", (6, 5), (*MAGENTA, 255)), name="Magenta", top=30, left=50)
    top.visible = False
    buffer = io.BytesIO()
    psd.save(buffer)
    data = buffer.getvalue()
    if stored is not None:  # psd-tools stores the flattened image raw, as the file's last W*H*3 bytes (R, G, B planes)
        planes = b"".join(bytes([value]) * (W * H) for value in stored)
        data = data[: -len(planes)] + planes
    return data


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA")).astype(int)


def from_data_url(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_layer_tree() -> None:
    layers = psd_layers(layered_psd())
    got = [
        (e.index, e.path, e.group, e.kind, e.visible, e.shown, e.opacity, (e.left, e.top, e.width, e.height))
        for e in layers
    ]
    assert got == [
        ("0", "Background", (), "pixel", True, True, 1.0, (0, 0, W, H)),
        ("1", "Shapes", (), "group", True, True, 1.0, (3, 2, 41, 32)),
        ("1/0", "Shapes/Red", ("Shapes",), "pixel", True, True, 1.0, (3, 2, 10, 10)),
        ("1/1", "Shapes/Green half", ("Shapes",), "pixel", True, True, round(128 / 255, 4), (20, 15, 10, 8)),
        ("1/2", "Shapes/Black", ("Shapes",), "pixel", False, False, 1.0, (40, 30, 4, 4)),
        ("2", "Yellow", (), "pixel", False, False, 1.0, (0, 0, W, H)),
        ("3", "Top", (), "group", False, False, 1.0, (50, 30, 6, 5)),
        ("3/0", "Top/Magenta", ("Top",), "pixel", True, False, 1.0, (50, 30, 6, 5)),
    ]
    assert [e.blend_mode for e in layers][:3] == ["normal", "pass_through", "normal"]


def test_one_layer_alone_on_the_canvas() -> None:
    data = layered_psd()
    red = pixels(decode_image(data, layer="1/0"))
    assert red.shape == (H, W, 4)
    assert (red[2:12, 3:13] == (*RED, 255)).all() and red[..., 3].sum() == 100 * 255
    green = pixels(decode_image(data, layer="Shapes/Green half"))  # its opacity applies
    assert (np.abs(green[15:23, 20:30] - (*GREEN, 128)) <= 1).all() and (green[:15, :, 3] == 0).all()
    yellow = pixels(decode_image(data, layer="Yellow"))  # hidden, by a unique name: shown alone anyway
    assert (yellow == (*YELLOW, 255)).all()
    shapes = pixels(decode_image(data, layer="1"))  # a group: its visible contents, not the hidden Black
    assert (shapes[2:12, 3:13] == (*RED, 255)).all() and shapes[15:23, 20:30, 3].min() >= 127
    assert (shapes[30:34, 40:44, 3] == 0).all()
    inner = pixels(decode_image(data, layer="Top"))  # a hidden group shows its own visible layers
    assert (inner[30:35, 50:56] == (*MAGENTA, 255)).all() and inner[..., 3].sum() == 30 * 255


def test_merged_and_visible_composites() -> None:
    data = layered_psd(stored=RED)
    merged = pixels(decode_image(data))
    assert (merged[..., :3] == RED).all()  # what Photoshop stored
    visible = pixels(decode_image(data, layers="visible"))  # recomposited from the visible layers
    assert tuple(visible[0, 0]) == (*BLUE, 255) and tuple(visible[5, 5]) == (*RED, 255)
    assert np.abs(visible[18, 25] - (0, 128, 127, 255)).max() <= 2  # green at 50 % over blue
    assert tuple(visible[31, 41]) == (*BLUE, 255) and tuple(visible[32, 52]) == (*BLUE, 255)  # hidden: not drawn


def test_layer_selection_errors() -> None:
    data = layered_psd()
    with pytest.raises(errors.LayerNotFoundError) as missing:
        decode_image(data, layer="Nope")
    assert missing.value.code == "layer_not_found" and missing.value.details["layers"][1]["path"] == "Shapes"
    with pytest.raises(errors.LayerNotFoundError):
        decode_image(data, layer="9/9")
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    with pytest.raises(errors.LayerNotFoundError, match="PNG"):
        decode_image(png.getvalue(), layer="0")
    assert decode_image(png.getvalue(), layers="visible").size == (4, 4)  # one layer: it is the composite


def test_duplicate_names_need_an_index_path() -> None:
    from psd_tools import PSDImage

    psd = PSDImage.new("RGB", (8, 8))
    psd.create_pixel_layer(Image.new("RGB", (8, 8), RED), name="Same")
    psd.create_pixel_layer(Image.new("RGB", (8, 8), GREEN), name="Same")
    buffer = io.BytesIO()
    psd.save(buffer)
    with pytest.raises(errors.LayerNotFoundError) as twice:
        decode_image(buffer.getvalue(), layer="Same")
    assert twice.value.details["matches"] == ["0", "1"]
    assert tuple(pixels(decode_image(buffer.getvalue(), layer="1"))[0, 0]) == (*GREEN, 255)


def test_layers_endpoint(client) -> None:
    data = layered_psd()
    body = client.post("/api/v1/psd/layers", data={"file": (io.BytesIO(data), "design.psd")}).get_json()
    assert (body["width"], body["height"], body["color_mode"], body["depth"]) == (W, H, "rgb", 8)
    assert [layer["index"] for layer in body["layers"]] == ["0", "1", "1/0", "1/1", "1/2", "2", "3", "3/0"]
    green = body["layers"][3]
    assert green["box"] == [20, 15, 30, 23] and green["group"] == ["Shapes"] and "png" not in green

    answer = client.post(
        "/api/v1/psd/layers", data={"file": (io.BytesIO(data), "design.psd"), "png": "true", "layer": "Shapes"}
    )
    listed = answer.get_json()["layers"]
    assert [layer["path"] for layer in listed] == ["Shapes", "Shapes/Red", "Shapes/Green half", "Shapes/Black"]
    red = listed[1]
    assert red["png_box"] == [3, 2, 13, 12] and (pixels(from_data_url(red["png"])) == (*RED, 255)).all()
    hidden = pixels(from_data_url(listed[3]["png"]))  # a hidden layer's pixels on request too
    assert hidden.shape == (4, 4, 4) and (hidden == (*BLACK, 255)).all()
    group = pixels(from_data_url(listed[0]["png"]))
    assert listed[0]["png_box"] == [3, 2, 44, 34] and tuple(group[0, 0]) == (*RED, 255)


def test_layers_endpoint_errors(client) -> None:
    psd = layered_psd()
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")

    def post(data: bytes, **fields: str):
        return client.post("/api/v1/psd/layers", data={"file": (io.BytesIO(data), "x"), **fields})

    assert post(png.getvalue()).status_code == 415
    unknown = post(psd, layer="Nope")
    assert unknown.status_code == 422 and unknown.get_json()["error"]["code"] == "layer_not_found"
    assert post(psd, png="maybe").get_json()["error"]["code"] == "validation_error"
    truncated = post(psd[:200])
    assert truncated.status_code == 422 and truncated.get_json()["error"]["code"] == "corrupt_image"


def test_layer_pngs_have_a_budget(home) -> None:
    from psd_tools import PSDImage

    psd = PSDImage.new("RGB", (W, H))
    for index in range(5):
        psd.create_pixel_layer(Image.new("RGB", (W, H), (index, 0, 0)), name=f"L{index}")
    buffer = io.BytesIO()
    psd.save(buffer)
    small = create_app({"TESTING": True, "home": str(home), "max_pixels": W * H}).test_client()

    def post(**fields: str):
        return small.post("/api/v1/psd/layers", data={"file": (io.BytesIO(buffer.getvalue()), "x"), **fields})

    assert post().status_code == 200
    over = post(png="true")  # 5 full-canvas PNGs > 4 x the pixel limit
    assert over.status_code == 413 and "layer" in over.get_json()["error"]["message"]
    assert post(png="true", layer="4").get_json()["layers"][0]["png_box"] == [0, 0, W, H]


def test_convert_takes_a_layer(client) -> None:
    data = layered_psd(stored=RED)

    def convert(**fields: str):
        return client.post("/api/v1/convert", data={"file": (io.BytesIO(data), "design.psd"), **fields})

    one = convert(layer="Shapes/Red")
    assert one.status_code == 200 and one.headers["X-Image-Width"] == str(W)
    assert pixels(Image.open(io.BytesIO(one.data)))[..., 3].sum() == 100 * 255
    assert tuple(pixels(Image.open(io.BytesIO(convert(layers="visible").data)))[0, 0]) == (*BLUE, 255)
    assert tuple(pixels(Image.open(io.BytesIO(convert().data)))[0, 0]) == (*RED, 255)
    both = convert(layer="0", layers="visible")
    assert both.status_code == 422 and both.get_json()["error"]["code"] == "validation_error"
    assert convert(layer="Nope").get_json()["error"]["code"] == "layer_not_found"


def test_predict_takes_a_layer(app, client) -> None:
    register_doubles(app)
    data = layered_psd()
    answer = client.post(
        "/api/v1/predict",
        data={"file": (io.BytesIO(data), "design.psd"), "model": "negative", "layer": "1/0", "return": "image"},
    )
    assert answer.status_code == 200
    negative = pixels(Image.open(io.BytesIO(answer.data)))
    assert negative.shape == (H, W, 4) and (negative[2:12, 3:13] == (0, 255, 255, 255)).all()
    boxed = client.post(
        "/api/v1/predict/json",
        json={"model": "inkbox", "images": [base64.b64encode(data).decode()] * 2, "layer": "Top/Magenta"},
    ).get_json()
    assert [result["detections"][0]["box"] for result in boxed["results"]] == [[50, 30, 56, 35]] * 2
    missing = client.post(
        "/api/v1/predict", data={"file": (io.BytesIO(data), "design.psd"), "model": "inkbox", "layer": "Nope"}
    )
    assert missing.status_code == 422 and missing.get_json()["error"]["code"] == "layer_not_found"
