"""The output-size limit of the built-in native-resolution models: a message with its unit and what to send instead."""

from __future__ import annotations

import pytest
from PIL import Image

from ai_service.imaging.errors import ImageTooLargeError
from ai_service.models.base import ModelOptions
from ai_service.models.builtin.upscale import UpscaleModel


def refusal(model, *sizes: tuple[int, int]) -> str:
    with pytest.raises(ImageTooLargeError) as caught:
        model.preprocess([Image.new("RGB", size) for size in sizes], ModelOptions())
    return str(caught.value)


def test_one_image_too_large_names_megapixels_and_the_largest_input():
    message = refusal(UpscaleModel(4), (2000, 1000))
    assert "2000×1000 (2.0 megapixels)" in message and "32.0 megapixels" in message
    assert "at most 24.0 megapixels per image" in message and "at most 1.5 megapixels" in message
    assert "Send a smaller image." in message
    assert "fewer" not in message and "per request is 24.0." not in message  # issue 17: no bare number, no "fewer"


def test_several_images_are_told_to_send_fewer_or_smaller():
    model = UpscaleModel(2)
    model.max_batch_size = 2
    message = refusal(model, (2000, 1600), (2000, 1600))
    assert "25.6 megapixels from these 2 images" in message
    assert "at most 24.0 megapixels per request" in message and message.endswith("Send fewer or smaller images.")


def test_models_api_lists_each_models_own_input_limit(client):
    """The upload page reads max_input_pixels to warn before sending (null: only the server's limit applies)."""
    body = client.get("/api/v1/models").get_json()
    models = {m["name"]: m for m in (body.get("models") or body["data"]["models"])}
    assert models["upscale-4x"]["max_input_pixels"] == 1_500_000 == UpscaleModel(4).max_input_pixels
    assert models["upscale-2x"]["max_input_pixels"] == 6_000_000
    assert models["digits"]["max_input_pixels"] is None
