"""GET /api/v1/models/<ref> answers the documented JSON for every ref form: name, name@version, unknown, failed."""

from __future__ import annotations

import textwrap

import pytest

from ai_service import create_app
from ai_service.schemas import ErrorResponse, ModelDetail

GOOD_PLUGIN = """
import torch
from ai_service.models.base import ImageModel, ModelInfo, top_k_predictions


class Good(ImageModel):
    info = ModelInfo(name="good", version="{version}", input_size=(4, 4), labels=("low", "high"))

    def load(self, device):
        self.network = torch.nn.Identity()
        self.device = device

    def preprocess(self, images, options):
        return torch.zeros(len(images), 2)

    def postprocess(self, outputs, options):
        return top_k_predictions(outputs, self.info.labels, 1)
"""


@pytest.fixture
def client(tmp_path):
    folder = tmp_path / "home" / "models"
    folder.mkdir(parents=True)
    (folder / "good_one.py").write_text(
        textwrap.dedent(GOOD_PLUGIN.replace("Good(", "GoodOne(").replace("{version}", "1"))
    )
    (folder / "good_two.py").write_text(
        textwrap.dedent(GOOD_PLUGIN.replace("Good(", "GoodTwo(").replace("{version}", "2"))
    )
    (folder / "broken.py").write_text("raise RuntimeError('this plugin does not import')\n")
    return create_app({"TESTING": True, "home": str(tmp_path / "home")}).test_client()


@pytest.mark.parametrize(
    "ref, key",
    [
        ("good", "good@2"),
        ("good@1", "good@1"),
        ("good@2", "good@2"),
        ("digits", "digits@1.0"),
        ("digits@1.0", "digits@1.0"),
    ],
)
def test_a_registered_model_by_name_or_name_at_version(client, ref, key):
    response = client.get(f"/api/v1/models/{ref}")
    assert response.status_code == 200
    body = ModelDetail.model_validate(response.get_json())
    assert body.key == key and body.state == "registered"
    assert body.versions == (["1", "2"] if ref.startswith("good") else ["1.0"])


@pytest.mark.parametrize("ref", ["broken", "broken@1", "broken@7"])
def test_a_plugin_that_failed_to_import_answers_its_failed_status(client, ref):
    response = client.get(f"/api/v1/models/{ref}")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = ModelDetail.model_validate(response.get_json())
    assert body.name == "broken" and body.state == "failed" and "this plugin does not import" in body.error
    assert body.source == "plugin broken.py" and body.versions == []


@pytest.mark.parametrize("ref", ["nope", "nope@1", "good@9", "digits@1"])
def test_an_unknown_ref_is_a_404_unknown_model(client, ref):
    response = client.get(f"/api/v1/models/{ref}")
    assert response.status_code == 404
    error = ErrorResponse.model_validate(response.get_json()).error
    assert error.code == "unknown_model" and error.details["model"] == ref
    assert {"good@1", "good@2"} <= set(error.details["available"])
    assert not any(ref.startswith("broken") for ref in error.details["available"])


def test_predict_with_a_failed_model_is_503_model_unavailable(client):
    import io

    from PIL import Image

    image = io.BytesIO()
    Image.new("L", (4, 4)).save(image, "PNG")
    response = client.post(
        "/api/v1/predict", data={"model": "broken@1", "file": (io.BytesIO(image.getvalue()), "a.png")}
    )
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "model_unavailable"
