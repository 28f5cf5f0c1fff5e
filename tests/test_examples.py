"""Example inputs: shipped for every built-in model, reproducible from code, listed and served by the API, chosen to
show what each model does; models-file entries and plugins declare their own."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import encode
from PIL import Image

from ai_service import create_app
from ai_service.models.base import Batch, ImageModel, ModelInfo, top_k_predictions
from ai_service.models.builtin import builtin_models
from ai_service.models.builtin.make_examples import EXAMPLES_DIR, GENERATORS, MODEL_EXAMPLES, write_examples

BUILTIN = ("digits", "digits-detect", "digits-segment", "edges", "remove-bg", "upscale-2x", "upscale-4x")
MAX_EXAMPLE_BYTES = 32 * 1024  # small enough to ship in the wheel and to load at a click


def listed(client) -> dict[str, dict]:
    return {model["name"]: model for model in client.get("/api/v1/models").get_json()["models"]}


def fetch(client, url: str):
    response = client.get(url)
    assert response.status_code == 200, (url, response.get_data(as_text=True)[:200])
    return response


def run(client, model: str, data: bytes, name: str, **options) -> dict:
    response = client.post("/api/v1/predict", data={"model": model, **options, "file": (io.BytesIO(data), name)})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"][0]


def output_image(result: dict) -> Image.Image:
    from ai_service.client import decode_data_url

    return Image.open(io.BytesIO(decode_data_url(result["image"])))


# ---- shipped and reproducible -------------------------------------------------------------------------------------


def test_every_builtin_model_has_examples_and_every_file_is_shipped_and_small():
    assert set(MODEL_EXAMPLES) == set(BUILTIN) == {model.info.name for model in builtin_models()}
    for model in builtin_models():
        assert model.info.examples, model.info.name
        assert all(path.is_file() for path in model.info.examples)
    shipped = {path.name for path in EXAMPLES_DIR.iterdir()}
    assert shipped == set(GENERATORS) == {name for names in MODEL_EXAMPLES.values() for name in names}
    assert all((EXAMPLES_DIR / name).stat().st_size <= MAX_EXAMPLE_BYTES for name in shipped)


def test_the_generator_reproduces_the_shipped_files(tmp_path):
    """`python -m ai_service.models.builtin.make_examples` draws the same pictures: PNGs pixel for pixel, JPEGs within
    what another JPEG library's rounding may change."""
    write_examples(tmp_path)
    for name in GENERATORS:
        made = np.asarray(Image.open(tmp_path / name).convert("RGBA"), dtype=np.int16)
        shipped = np.asarray(Image.open(EXAMPLES_DIR / name).convert("RGBA"), dtype=np.int16)
        assert made.shape == shipped.shape, name
        if name.endswith(".png"):
            assert (made == shipped).all(), name
        else:
            assert np.abs(made - shipped).mean() < 1.0, name


# ---- the API ------------------------------------------------------------------------------------------------------


def test_the_model_list_and_detail_name_each_example_with_its_url(client):
    models = listed(client)
    for name in BUILTIN:
        examples = models[name]["examples"]
        assert [example["name"] for example in examples] == list(MODEL_EXAMPLES[name])
        key = models[name]["key"]
        assert all(example["url"] == f"/api/v1/models/{key}/examples/{example['name']}" for example in examples)
    detail = client.get("/api/v1/models/digits").get_json()
    assert detail["examples"] == models["digits"]["examples"]
    assert "/" not in "".join(example["name"] for example in detail["examples"])  # no server paths leak


@pytest.mark.parametrize("ref", ["digits", "digits@1.0"])
def test_each_example_is_served_with_its_type_an_etag_and_caching(client, ref):
    response = fetch(client, f"/api/v1/models/{ref}/examples/handwritten-7.png")
    assert response.mimetype == "image/png"
    assert response.data == (EXAMPLES_DIR / "handwritten-7.png").read_bytes()
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert 'inline; filename="handwritten-7.png"' == response.headers["Content-Disposition"]
    etag = response.headers["ETag"]
    again = client.get(f"/api/v1/models/{ref}/examples/handwritten-7.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data
    jpeg = fetch(client, "/api/v1/models/edges/examples/street-scene.jpg")
    assert jpeg.mimetype == "image/jpeg" and jpeg.headers["ETag"] != etag


@pytest.mark.parametrize(
    "url, code",
    [
        ("/api/v1/models/digits/examples/street-scene.jpg", "not_found"),  # another model's example
        ("/api/v1/models/digits/examples/nope.png", "not_found"),
        ("/api/v1/models/digits/examples/..%2F..%2Fweights%2Fdigits.pt", "not_found"),
        ("/api/v1/models/nope/examples/handwritten-7.png", "unknown_model"),
    ],
)
def test_unknown_examples_and_models_are_404_envelopes(client, url, code):
    response = client.get(url)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == code


def test_the_document_describes_the_example_route(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/models/{ref}/examples/{example}"]["get"]
    assert set(operation["responses"]["200"]["content"]) >= {"image/png", "image/jpeg"}
    assert {"404", "503"} <= set(operation["responses"])
    assert "handwritten-7.png" in operation["x-codeSamples"][0]["source"]


# ---- each example shows what its model is for ---------------------------------------------------------------------


def test_the_digit_examples_are_read_as_their_digits(client):
    for name, digit in (("handwritten-7.png", "7"), ("handwritten-3.png", "3")):
        data = fetch(client, f"/api/v1/models/digits/examples/{name}").data
        best = run(client, "digits", data, name)["predictions"][0]
        assert best["label"] == digit and best["score"] > 0.9, (name, best)


def test_remove_bg_cuts_the_bottle_out_of_its_white_background(client):
    data = fetch(client, "/api/v1/models/remove-bg/examples/bottle-on-white.jpg").data
    alpha = np.asarray(output_image(run(client, "remove-bg", data, "bottle-on-white.jpg")).getchannel("A"))
    height, width = alpha.shape
    assert alpha[:8].max() < 16 and alpha[:, :8].max() < 16  # the studio white is gone
    body = alpha[height // 2 - 20 : height // 2 + 20, width // 2 - 20 : width // 2 + 20]
    assert body.min() > 240  # the bottle, its white highlight and its label stay
    assert 0.15 < (alpha > 128).mean() < 0.5


def test_upscale_4x_enlarges_the_sprite_and_keeps_its_transparency(client):
    data = fetch(client, "/api/v1/models/upscale-4x/examples/pixel-sprite.png").data
    image = output_image(run(client, "upscale-4x", data, "pixel-sprite.png"))
    assert image.size == (128, 128) and image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((64, 40))[3] == 255


def test_edges_draws_the_outlines_of_the_scene_not_its_grain(client):
    data = fetch(client, "/api/v1/models/edges/examples/street-scene.jpg").data
    edges = np.asarray(output_image(run(client, "edges", data, "street-scene.jpg")).convert("L"))
    strong = edges > 128
    assert 0.01 < strong.mean() < 0.12  # outlines, not noise everywhere
    assert edges[:20, 100:140].max() < 64  # clear sky (with grain) draws nothing


# ---- declared by a models file or a plugin ------------------------------------------------------------------------


def write_models_file(home: Path, examples: list[str]) -> None:
    from ai_service.models.builtin.digits import WEIGHTS_PATH

    models = home / "models"
    (models / "examples").mkdir(parents=True, exist_ok=True)
    (models / "digits.pt").write_bytes(WEIGHTS_PATH.read_bytes())
    (models / "examples" / "cat.png").write_bytes(encode(Image.new("RGB", (40, 30), (200, 120, 60))))
    (models / "examples" / "notes.txt").write_text("not an image")
    (home / "outside.png").write_bytes(encode(Image.new("L", (8, 8), 0)))
    entry = {"name": "mine", "kind": "state_dict", "architecture": "resnet18", "num_classes": 2, "weights": "digits.pt"}
    (home / "models.yaml").write_text(yaml.safe_dump({"models": [{**entry, "examples": examples}]}))


def app_on(home: Path):
    return create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "load_plugins": False})


def test_a_models_file_entry_declares_examples_relative_to_the_models_folder(tmp_path):
    home = tmp_path / "home"
    write_models_file(home, ["examples/cat.png"])
    client = app_on(home).test_client()
    mine = listed(client)["mine"]
    assert mine["state"] == "registered"
    assert mine["examples"] == [{"name": "cat.png", "url": "/api/v1/models/mine@1/examples/cat.png"}]
    served = fetch(client, mine["examples"][0]["url"])
    assert served.mimetype == "image/png" and served.data == (home / "models" / "examples" / "cat.png").read_bytes()


@pytest.mark.parametrize(
    "path, reason",
    [
        ("../../outside.png", "outside AI_SERVICE_HOME"),
        ("examples/missing.png", "does not exist"),
        ("examples/notes.txt", "not an image"),
    ],
)
def test_a_bad_example_path_refuses_the_entry_with_the_reason(tmp_path, path, reason):
    home = tmp_path / "home"
    write_models_file(home, [path])
    (tmp_path / "outside.png").write_bytes(encode(Image.new("L", (8, 8), 0)))
    mine = listed(app_on(home).test_client())["mine"]
    assert mine["state"] == "failed" and reason in mine["error"] and mine["examples"] == []


class Plugin(ImageModel):
    info = ModelInfo(name="plugin-with-examples", input_size=(8, 8), labels=("a", "b"))

    def load(self, device):
        self.network, self.device = torch.nn.Identity(), device

    def preprocess(self, images, options):
        return Batch(torch.zeros(len(images), 2))

    def postprocess(self, outputs, items, options):
        return top_k_predictions(outputs, self.info.labels, options.top_k)


def test_a_plugin_declares_examples_in_its_model_info(home):
    from dataclasses import replace

    model = Plugin()
    model.info = replace(Plugin.info, examples=(EXAMPLES_DIR / "pixel-sprite.png",))
    app = app_on(home)
    app.extensions["ai_service"].registry.register(model)
    client = app.test_client()
    assert [e["name"] for e in listed(client)["plugin-with-examples"]["examples"]] == ["pixel-sprite.png"]
    assert fetch(client, "/api/v1/models/plugin-with-examples/examples/pixel-sprite.png").mimetype == "image/png"


@pytest.mark.parametrize(
    "examples, problem",
    [
        ((Path("relative.png"),), "absolute"),
        ((EXAMPLES_DIR / "pixel-sprite.png", EXAMPLES_DIR.parent / "pixel-sprite.png"), "distinct"),
        ((Path("/tmp/has space.png"),), "distinct file names"),
    ],
)
def test_model_info_refuses_examples_it_could_not_serve(examples, problem):
    with pytest.raises(ValueError, match=problem):
        ModelInfo(name="x", examples=examples)
