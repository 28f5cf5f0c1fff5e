"""`output_format=svg`: detections, segmentation masks and the edges model drawn as SVG, parsed back (defusedxml) and
rendered (cairosvg): boxes where the detections are, paths covering exactly the mask pixels."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import cairosvg
import numpy as np
import pytest
import torch
from defusedxml import ElementTree
from PIL import Image, ImageDraw

from ai_service.imaging.vector import Region, regions_svg, trace
from ai_service.models.base import ModelInfo, ModelOptions
from ai_service.models.tasks import segmentation
from tests.web_doubles import _AlphaModel, register_doubles

NS = {"svg": "http://www.w3.org/2000/svg"}


class ColorClassModel(_AlphaModel):
    """Segmentation with a legend: red pixels are class `red`, green ones `green`, the rest background."""

    info = ModelInfo(
        name="colorclasses",
        version="1",
        task="segmentation",
        input_size=None,
        input_mode="RGBA",
        labels=("background", "red", "green"),
        description="Test double: classes by color.",
    )

    def postprocess(self, outputs: torch.Tensor, items: Sequence[None], options: ModelOptions) -> list[dict[str, Any]]:
        results = []
        for rgba in outputs:
            red = (rgba[0] > 0.5) & (rgba[1] < 0.5)
            green = (rgba[1] > 0.5) & (rgba[0] < 0.5)
            logits = torch.stack([torch.full_like(rgba[0], 0.5), red.float(), green.float()])
            results.append(segmentation(logits, self.info.labels))
        return results


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def shapes_image() -> Image.Image:
    """A ring (a hole in it) and a square in red, a disc in green, on transparency."""
    image = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 46, 46), fill=(255, 0, 0, 255))
    draw.ellipse((18, 18, 34, 34), fill=(0, 0, 0, 0))
    draw.rectangle((70, 40, 90, 58), fill=(255, 0, 0, 255))
    draw.ellipse((52, 4, 80, 32), fill=(0, 255, 0, 255))
    return image


def rasterize(svg: str) -> np.ndarray:
    """The drawing rendered at its own size, as RGBA."""
    return np.asarray(Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg.encode()))).convert("RGBA")).astype(int)


def parse(svg: str) -> Any:
    root = ElementTree.fromstring(svg.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def svg_of(result: dict[str, Any]) -> str:
    return base64.b64decode(result["svg"].split(",", 1)[1]).decode()


def predict(client, image: bytes, **fields: str):
    return client.post("/api/v1/predict", data={"file": (io.BytesIO(image), "in.png"), **fields})


@pytest.mark.parametrize("seed", range(4))
def test_trace_follows_pixel_edges_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((30, 41)) > 0.55  # noise: holes, islands, pixels touching at corners
    mask[10:20, 10:25] = True
    mask[13:16, 14:17] = False
    svg = regions_svg(41, 30, [Region("x", "#123456", mask)])
    drawn = rasterize(svg)
    assert (drawn[..., 3] > 127).tolist() == mask.tolist()
    assert (drawn[mask][:, :3] == (0x12, 0x34, 0x56)).all()
    # Exact, not just close: at 4x every edge falls between pixels, so no pixel is partly covered.
    big = np.asarray(Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg.encode(), scale=4))))[..., 3]
    assert np.array_equal(big, np.kron(mask, np.ones((4, 4), bool)) * 255)
    assert trace(np.zeros((3, 3), bool)) == "" and trace(np.ones((1, 1), bool)) == "M0 0L0 1L1 1L1 0Z"


def test_detection_svg(app, client) -> None:
    register_doubles(app)
    image = Image.new("RGBA", (80, 50), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((20, 10, 49, 39), fill=(0, 0, 0, 255))  # ink box: x 20..50, y 10..40
    answer = predict(client, png(image), model="inkbox", output_format="svg").get_json()
    result = answer["results"][0]
    assert result["detections"][0]["box"] == [20, 10, 50, 40]
    svg = svg_of(result)
    root = parse(svg)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("80", "50", "0 0 80 50")
    group = root.find("svg:g", NS)
    assert group.get("data-label") == "ink" and float(group.get("data-score")) == pytest.approx(0.9)
    box = group.find("svg:rect", NS)
    assert [float(box.get(k)) for k in ("x", "y", "width", "height")] == [20, 10, 30, 30]
    assert group.find("svg:text", NS).text == "ink 0.90"
    drawn = rasterize(svg)
    stroke = drawn[..., 3] > 127
    assert stroke[25, 20] and stroke[25, 49] and stroke[39, 35]  # the outline, on the box's edges
    assert not stroke[25, 35] and not stroke[45:, :].any() and not stroke[12:, 55:].any()  # inside, beyond: clear
    assert stroke[:10, 20:50].all()  # the label tag above the box

    body = predict(client, png(image), model="inkbox", output_format="svg", **{"return": "image"})
    assert body.status_code == 200 and body.mimetype == "image/svg+xml"
    assert 'filename="in-inkbox.svg"' in body.headers["Content-Disposition"]
    assert parse(body.data.decode()).find("svg:g/svg:rect", NS).get("x") == "20"


def test_segmentation_svg_one_path_per_class(app, client) -> None:
    app.extensions["ai_service"].registry.register(ColorClassModel())
    image = shapes_image()
    answer = predict(client, png(image), model="colorclasses", output_format="svg")
    result = answer.get_json()["results"][0]
    legend = {entry["label"]: entry["color"] for entry in result["classes"]}
    root = parse(svg_of(result))
    paths = root.findall(".//svg:path", NS)
    assert sorted(path.get("data-label") for path in paths) == ["green", "red"]
    assert all(path.get("fill-rule") == "evenodd" for path in paths)
    assert all(path.get("fill") == legend[path.get("data-label")] for path in paths)
    drawn = rasterize(svg_of(result))
    rgba = np.asarray(image).astype(int)
    for label, color in (("red", (255, 0, 0)), ("green", (0, 255, 0))):
        expected = (rgba[..., 3] > 0) & (rgba[..., :3] == color).all(-1)
        fill = tuple(int(legend[label][i : i + 2], 16) for i in (1, 3, 5))
        got = (drawn[..., 3] > 127) & (np.abs(drawn[..., :3] - fill).max(-1) <= 2)
        assert iou(got, expected) >= 0.95
    assert drawn[26, 26, 3] == 0  # the ring's hole stays open


def test_binary_mask_svg_and_background(app, client) -> None:
    register_doubles(app)
    image = shapes_image()
    result = predict(client, png(image), model="alphamask", output_format="svg").get_json()["results"][0]
    assert result["mask"].startswith("data:image/png;base64,")
    drawn = rasterize(svg_of(result))
    assert iou(drawn[..., 3] > 127, np.asarray(image)[..., 3] > 0) >= 0.95

    opaque = Image.new("RGB", (40, 30), (10, 200, 30))
    ImageDraw.Draw(opaque).rectangle((5, 5, 14, 14), fill=(250, 250, 250))
    with_image = predict(client, png(opaque), model="edges", output_format="svg", svg_background="image")
    svg = svg_of(with_image.get_json()["results"][0])
    base = parse(svg).find("svg:image", NS)
    assert base.get("{http://www.w3.org/1999/xlink}href").startswith("data:image/png;base64,")
    drawn = rasterize(svg)
    assert tuple(drawn[25, 35]) == (10, 200, 30, 255)  # the input shows through where no line is


def test_edges_svg_traces_the_edge_map(client) -> None:
    image = Image.new("RGB", (64, 48), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 8, 40, 30), fill=(255, 255, 255))
    draw.ellipse((36, 20, 58, 42), fill=(128, 128, 255))
    edges = predict(client, png(image), model="edges", **{"return": "image"})
    lines = np.asarray(Image.open(io.BytesIO(edges.data)).convert("L")) > 127
    assert lines.sum() > 100
    result = predict(client, png(image), model="edges", output_format="svg").get_json()["results"][0]
    assert result["image"].startswith("data:image/png;base64,")  # the edge map itself stays lossless
    drawn = rasterize(svg_of(result))
    assert iou(drawn[..., 3] > 127, lines) >= 0.95 and (drawn[drawn[..., 3] > 127][:, :3] == 0).all()


def test_svg_needs_a_model_that_draws(client) -> None:
    seven = Image.new("L", (28, 28), 0)
    answer = predict(client, png(seven), model="digits", output_format="svg")
    assert answer.status_code == 422 and answer.get_json()["error"]["details"][0]["loc"] == ["output_format"]
    bad = predict(client, png(seven), model="edges", output_format="svg", svg_background="photo")
    assert bad.status_code == 422


def test_svg_of_a_psd_layer(app, client) -> None:
    from tests.test_psd_layers import layered_psd

    register_doubles(app)
    result = predict(client, layered_psd(), model="inkbox", output_format="svg", layer="Shapes/Red").get_json()
    root = parse(svg_of(result["results"][0]))
    assert root.get("viewBox") == "0 0 60 40"
    assert root.find("svg:g/svg:rect", NS).get("width") == "10"


@pytest.mark.parametrize("model", ["digits-detect", "digits-segment"])
def test_builtin_digit_models_draw(client, model) -> None:
    names = {entry["name"] for entry in client.get("/api/v1/models").get_json()["models"]}
    if model not in names:
        pytest.skip(f"{model} is not a built-in model of this version")
    with open("ai_service/models/builtin/examples/digit-scene.jpg", "rb") as file:
        scene = file.read()
    result = predict(client, scene, model=model, output_format="svg").get_json()["results"][0]
    svg = svg_of(result)
    root = parse(svg)
    assert (root.get("width"), root.get("height")) == (str(result["width"]), str(result["height"]))
    drawn = rasterize(svg)
    if model == "digits-detect":
        assert result["detections"]
        rects = root.findall("svg:g/svg:rect", NS)[::2]  # each box, then its label tag
        assert len(rects) == len(result["detections"])
        for rect, found in zip(rects, result["detections"]):
            x0, y0, x1, y1 = found["box"]
            assert float(rect.get("x")) == pytest.approx(x0) and float(rect.get("width")) == pytest.approx(x1 - x0)
            left = int(x0)
            assert drawn[round((y0 + y1) / 2), max(0, left - 1) : left + 2, 3].max() > 127  # the box's left edge
    else:
        mask = np.asarray(from_url(result["mask"]).convert("RGBA")).astype(int)
        for entry in result["classes"]:
            fill = tuple(int(entry["color"][i : i + 2], 16) for i in (1, 3, 5))
            expected = (mask[..., 3] > 0) & (mask[..., :3] == fill).all(-1)
            if not expected.any():
                continue
            got = (drawn[..., 3] > 127) & (np.abs(drawn[..., :3] - fill).max(-1) <= 2)
            assert iou(got, expected) >= 0.95, entry["label"]


def from_url(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
