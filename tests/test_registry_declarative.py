"""Declarative models from AI_SERVICE_HOME/models.yaml|toml served through the real app: every kind and task."""

import base64
import io

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image

from ai_service import create_app
from ai_service.models.loaders import sha256_of
from tests.conftest import encode

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


class Brightness(torch.nn.Module):
    """Classifies 'dark' vs 'bright' from the normalized mean: a real, checkable decision."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = x.mean(dim=(1, 2, 3))
        return torch.stack([-level, level], dim=1) * 10


class FixedBox(torch.nn.Module):
    """Detector that always finds class 1 at [8, 8, 24, 24] of its 32×32 input: (N, K, 6) rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row = torch.tensor([8.0, 8.0, 24.0, 24.0, 0.9, 1.0], device=x.device)
        low = torch.tensor([0.0, 0.0, 4.0, 4.0, 0.1, 0.0], device=x.device)
        return torch.stack([row, low]).expand(x.shape[0], 2, 6)


class ThresholdSegmenter(torch.nn.Module):
    """Two-class logits: class 1 where the (normalized) first channel is bright."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        bright = x[:, :1]
        return {"out": torch.cat([-bright, bright], dim=1)}


class Invert(torch.nn.Module):
    """Image-to-image: undo the [0.5]/[0.5] normalization and invert."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - (x * 0.5 + 0.5)


def script(module: torch.nn.Module, path):
    torch.jit.save(torch.jit.script(module), str(path))


@pytest.fixture(scope="module")
def model_home(tmp_path_factory):
    """A home with one models file exercising every kind, task and failure the issue names."""
    home = tmp_path_factory.mktemp("declarative")
    models = home / "models"
    models.mkdir()
    script(Brightness(), models / "brightness.pt")
    torch.save(Brightness().state_dict(), models / "unused.pt")
    script(FixedBox(), models / "box.pt")
    script(ThresholdSegmenter(), models / "seg.pt")
    script(Invert(), models / "invert.pt")
    exported = torch.export.export(Brightness(), (torch.zeros(2, 3, 8, 8),))  # batch fixed at 2
    torch.export.save(exported, str(models / "brightness.pt2"))
    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=2)
    torch.save(net.state_dict(), models / "mobile.pth")
    (models / "labels.txt").write_text("dark\nbright\n")
    common = {"input_size": [8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    entries = [
        {
            "name": "bright",
            "kind": "torchscript",
            "weights": "brightness.pt",
            "labels": ["dark", "bright"],
            "version": 1,
            **common,
        },
        {
            "name": "bright",
            "kind": "export",
            "weights": "brightness.pt2",
            "labels_file": "labels.txt",
            "version": "2",
            "sha256": sha256_of(models / "brightness.pt2"),
            **common,
        },
        {
            "name": "mobile",
            "kind": "state_dict",
            "architecture": "mobilenet_v3_small",
            "num_classes": 2,
            "weights": "mobile.pth",
            "labels_file": "labels.txt",
            "input_size": [64, 64],
            "sha256": sha256_of(models / "mobile.pth"),
        },
        {
            "name": "tampered",
            "kind": "state_dict",
            "architecture": "mobilenet_v3_small",
            "num_classes": 2,
            "weights": "mobile.pth",
            "sha256": "0" * 64,
        },
        {
            "name": "boxes",
            "kind": "torchscript",
            "weights": "box.pt",
            "task": "detection",
            "labels": ["bg", "cat"],
            "input_size": [32, 32],
            "fit": "letterbox",
        },
        {
            "name": "seg",
            "kind": "torchscript",
            "weights": "seg.pt",
            "task": "segmentation",
            "labels": ["background", "bright"],
            "input_size": [16, 16],
            **{k: common[k] for k in ("mean", "std")},
        },
        {
            "name": "invert",
            "kind": "torchscript",
            "weights": "invert.pt",
            "task": "image-to-image",
            "input_size": [16, 16],
            "mode": "L",
            "mean": [0.5],
            "std": [0.5],
        },
        {"name": "escape", "kind": "torchscript", "weights": "../../outside.pt"},
        {"name": "typo", "kind": "torchscript", "weights": "brightness.pt", "lables": ["a"]},
        {"name": "nowhere", "kind": "torchscript", "weights": "missing.pt"},
    ]
    (home / "models.yaml").write_text(yaml.safe_dump({"models": entries}))
    return home


@pytest.fixture(scope="module")
def client(model_home):
    app = create_app({"TESTING": True, "home": str(model_home), "log_level": "WARNING", "log_to_file": False})
    return app.test_client()


def predict(client, model, image, **fields):
    data = {"model": model, "file": (io.BytesIO(encode(image)), "x.png"), **fields}
    return client.post("/api/v1/predict", data=data, content_type="multipart/form-data")


def result(response) -> dict:
    """The one image's result with the response's model/version/task (single and batch bodies alike)."""
    body = response.get_json()
    assert response.status_code == 200, body
    return {**body, **body["results"][0]} if "results" in body else body


def decode_data_url(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def statuses(client):
    return {s["key"]: s for s in client.get("/api/v1/models").get_json()["models"]}


def test_models_file_entries_are_registered_and_bad_ones_listed_as_failed(client):
    models = statuses(client)
    assert {"bright@1", "bright@2", "mobile@1", "boxes@1", "seg@1", "invert@1", "nowhere@1"} <= set(models)
    assert models["bright@2"]["default"] and not models["bright@1"]["default"]
    assert models["bright@2"]["labels"] == ["dark", "bright"]
    assert models["bright@1"]["source"].startswith("models file models.yaml")
    assert "outside AI_SERVICE_HOME" in models["escape"]["error"] and models["escape"]["state"] == "failed"
    assert "lables" in models["typo"]["error"]


@pytest.mark.parametrize("model, version", [("bright", "2"), ("bright@1", "1"), ("bright@2", "2")])
def test_name_and_name_at_version_serve_the_right_version(client, model, version):
    white = result(predict(client, model, Image.new("RGB", (20, 10), "white")))
    black = result(predict(client, model, Image.new("RGB", (20, 10), "black")))
    assert white["version"] == version and white["predictions"][0]["label"] == "bright"
    assert black["predictions"][0]["label"] == "dark"
    assert white["geometry"]["fit"] == "stretch" and white["geometry"]["original_size"] == [20, 10]
    assert "src_size" not in white["geometry"]  # one vocabulary: the documented fields only


def test_export_with_fixed_batch_serves_any_number_of_images(client):
    files = [(io.BytesIO(encode(Image.new("L", (9, 9), v))), f"{v}.png") for v in (0, 255, 10, 250, 5)]
    body = client.post(
        "/api/v1/predict", data={"model": "bright@2", "file": files}, content_type="multipart/form-data"
    ).get_json()
    assert [r["predictions"][0]["label"] for r in body["results"]] == ["dark", "bright", "dark", "bright", "dark"]


def test_state_dict_model_runs_and_sha256_mismatch_refuses_the_model(client):
    body = result(predict(client, "mobile", Image.new("RGBA", (70, 50), (10, 200, 30, 128))))
    assert len(body["predictions"]) == 2 and {p["label"] for p in body["predictions"]} == {"dark", "bright"}
    refused = predict(client, "tampered", Image.new("RGB", (8, 8)))
    assert refused.status_code == 503 and "sha256 mismatch" in refused.get_json()["error"]["message"]
    assert statuses(client)["tampered@1"]["state"] == "failed"
    missing = predict(client, "nowhere", Image.new("RGB", (8, 8)))
    assert missing.status_code == 503 and "does not exist" in missing.get_json()["error"]["message"]


def test_detection_boxes_come_back_in_original_pixels(client):
    body = result(predict(client, "boxes", Image.new("RGB", (64, 32), "gray")))
    assert body["task"] == "detection"
    assert body["detections"] == [{"label": "cat", "index": 1, "score": 0.9, "box": [16.0, 0.0, 48.0, 32.0]}]
    assert body["geometry"]["fit"] == "letterbox" and body["geometry"]["padding"] == [0, 8, 0, 8]


def test_segmentation_mask_covers_the_original_image(client):
    image = Image.new("RGB", (40, 20), "black")
    image.paste((255, 255, 255), (20, 0, 40, 20))
    body = result(predict(client, "seg", image))
    mask = decode_data_url(body["mask"])
    assert mask.size == (40, 20)
    alpha = np.asarray(mask.convert("RGBA"))[..., 3]
    assert alpha[:, :18].max() == 0 and alpha[:, 22:].min() > 0
    assert {c["label"] for c in body["classes"]} == {"background", "bright"}
    assert sum(c["fraction"] for c in body["classes"]) == pytest.approx(1.0)


def test_image_to_image_output_has_the_original_size_and_alpha(client):
    image = Image.new("LA", (30, 12), (40, 255))
    image.putpixel((0, 0), (40, 0))
    body = result(predict(client, "invert", image))
    out = decode_data_url(body["image"])
    assert out.size == (30, 12) and out.mode == "LA"
    assert out.getpixel((0, 0))[1] == 0 and out.getpixel((15, 6)) == (215, 255)


def test_toml_models_file_is_read_too(tmp_path):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    script(Brightness(), home / "models" / "b.pt")
    (home / "models.toml").write_text(
        '[[models]]\nname = "tomlnet"\nkind = "torchscript"\nweights = "b.pt"\n'
        'labels = ["dark", "bright"]\ninput_size = [8, 8]\n'
    )
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "log_to_file": False})
    body = result(predict(app.test_client(), "tomlnet", Image.new("RGB", (8, 8), "white")))
    assert body["predictions"][0]["label"] == "bright"


def test_unreadable_models_file_is_listed_and_the_service_starts(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text("models: [ {name: x, kind: torchscript\n")
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "log_to_file": False})
    failed = [s for s in app.extensions["ai_service"].registry.statuses() if s["state"] == "failed"]
    assert [s["name"] for s in failed] == ["models.yaml"] and "ParserError" in failed[0]["error"]
    assert predict(app.test_client(), "digits", Image.new("L", (28, 28))).status_code == 200
