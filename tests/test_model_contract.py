"""The model contract: per-image state from preprocess reaches postprocess intact, whatever the batching did."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from conftest import encode
from PIL import Image

from ai_service import create_app
from ai_service.engine.batcher import Ticket
from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions
from ai_service.service.predict import Group, _postprocess


class WidthModel(ImageModel[int]):
    """Per-image state is the image's width; preprocess refuses a 3-px-wide image (only when batched with it)."""

    info = ModelInfo(name="widths", input_size=(8, 8), input_mode="L")

    def load(self, device: torch.device) -> None:
        self.network, self.device = torch.nn.Identity(), device

    def decode_size(self) -> tuple[int, int] | None:
        return None

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[int]:
        if any(image.width == 3 for image in images):
            raise ValueError("too narrow")
        return Batch(torch.tensor([[float(image.width)] for image in images]), [image.width for image in images])

    def postprocess(self, outputs: torch.Tensor, items: Sequence[int], options: ModelOptions) -> list[dict[str, Any]]:
        assert len(items) == outputs.shape[0]
        return [{"state": item, "output": int(row[0]), "top_k": options.top_k} for row, item in zip(outputs, items)]


def test_state_stays_with_its_image_when_a_batch_is_split_after_a_bad_one(home):
    app = create_app({"TESTING": True, "home": str(home), "log_to_file": False})
    app.extensions["ai_service"].registry.register(WidthModel())
    files = [(io.BytesIO(encode(Image.new("L", (width, 4), 200))), f"{width}.png") for width in (5, 3, 7, 9)]
    body = app.test_client().post("/api/v1/predict", data={"model": "widths", "top_k": "2", "file": files}).get_json()
    results = body["results"]
    assert [r.get("state") for r in results] == [5, None, 7, 9]
    assert [r.get("output") for r in results] == [5, None, 7, 9]  # each state arrived with its own output
    assert results[1]["error"]["code"] == "invalid_image" and all(r.get("top_k", 2) == 2 for r in results)


def test_postprocess_gets_exactly_the_states_of_the_images_whose_forward_worked():
    model = WidthModel()
    tickets = [Ticket(torch.zeros(1), 0.0, output=torch.tensor([[float(w)]])) for w in (10, 20, 30)]
    tickets[1].output, tickets[1].error = None, RuntimeError("forward failed for this image")
    group = Group([0, 1, 2], [10, 20, 30], ModelOptions(top_k=1), tickets)
    entries = _postprocess(model, group)
    assert entries[0]["state"] == 10 and entries[2]["state"] == 30 and entries[2]["output"] == 30
    assert entries[1]["status"] == 500


def test_a_stateless_model_returns_a_bare_batch_and_gets_none_per_image():
    batch = Batch(torch.zeros(3, 1))
    assert list(batch.states()) == [None, None, None]
    with pytest.raises(RuntimeError, match="2 items for 3 samples"):
        Batch(torch.zeros(3, 1), [1, 2]).states()


def test_options_are_a_frozen_typed_object_with_defaults():
    from ai_service.schemas import PredictOptions

    options = PredictOptions(fit="crop").model_options(default_top_k=5)
    assert options == ModelOptions(top_k=5, fit="crop")
    with pytest.raises(AttributeError):
        options.top_k = 1  # type: ignore[misc]
    assert ModelOptions().top_k == 3 and ModelOptions().score_threshold is None
