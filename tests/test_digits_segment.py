"""digits-segment: mean IoU ≥ 0.8 on held-out scenes through the real HTTP API, on every path: as composed,
EXIF-rotated, letterboxed, a 4000×3000 JPEG decoded reduced (the mask at the original size), and the example scenes;
a legend of the digits present, and transparent areas kept clear."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scene_support import Upload, big_jpegs, exif_rotated, letterboxed, mask_image, mask_of, plain, predict

from ai_service.models.base import ModelOptions
from ai_service.models.builtin.digits_segment import WEIGHTS_PATH, DigitsSegmentModel, classify
from ai_service.models.builtin.make_examples import SCENES
from ai_service.models.builtin.scene_networks import DetectNet, SegmentNet
from ai_service.models.builtin.scene_training import segment_start
from ai_service.models.builtin.scenes import compose_scene, digit_pool, mean_iou, scene_set
from ai_service.models.tasks import palette

TARGET_MIOU = 0.8


def test_each_piece_of_ink_is_one_digit_by_the_vote_of_its_pixels_and_specks_are_background():
    probabilities = torch.full((11, 12, 16), 1e-3)
    probabilities[0] = 0.99  # background everywhere but two blobs and a speck
    probabilities[0, 1:9, 1:5] = probabilities[0, 2:7, 8:13] = probabilities[0, 10, 14:16] = 0.01
    probabilities[4, 1:9, 1:5] = 0.7  # the left blob is mostly a 3 ...
    probabilities[9, 1:3, 1:5] = 0.9  # ... whose top rows, alone, read as an 8
    probabilities[6, 2:7, 8:13] = 0.8  # the right one a 5
    probabilities[2, 10, 14:16] = 0.9  # the speck a 1
    classes = classify(probabilities.log())
    assert (classes[1:9, 1:5] == 4).all() and (classes[2:7, 8:13] == 6).all()
    assert (classes == 0).sum() == classes.size - 32 - 25


def test_training_starts_from_the_detectors_encoder_and_digit_reading_path():
    result = SegmentNet().load_state_dict(segment_start(DetectNet().state_dict()), strict=False)
    own = ("full.", "up_half.", "decode_half.", "up_full.", "decode_full.", "ink.")  # the masks' own layers
    assert not result.unexpected_keys and result.missing_keys and all(k.startswith(own) for k in result.missing_keys)


def test_the_committed_weights_are_small():
    assert WEIGHTS_PATH.stat().st_size < 1_000_000


@pytest.fixture(scope="module")
def held_out():
    return plain(40)


def test_masks_of_held_out_scenes_come_back_at_their_size_and_reach_the_target(client, held_out):
    results = predict(client, "digits-segment", held_out)
    masks = [mask_of(result) for result in results]
    assert all(mask.shape == upload.classes.shape for mask, upload in zip(masks, held_out))
    assert mean_iou(masks, [u.classes for u in held_out]) >= TARGET_MIOU


def test_the_legend_names_the_digits_in_the_picture_with_their_mask_colors(client):
    uploads = plain(12)
    colors = palette(11)
    for result, upload in zip(predict(client, "digits-segment", uploads), uploads):
        legend = {entry["label"]: entry for entry in result["classes"]}
        digits = {str(label) for label in upload.labels}
        assert digits <= set(legend)  # every digit in the picture is named
        for entry in result["classes"]:
            assert entry["color"] == "#{:02x}{:02x}{:02x}".format(*colors[entry["index"]])
            assert entry["label"] == ("background" if entry["index"] == 0 else str(entry["index"] - 1))
        assert abs(sum(entry["fraction"] for entry in result["classes"]) - 1) < 1e-3
        assert result["classes"][0]["label"] == "background"  # the largest share comes first


@pytest.mark.parametrize(
    "make, count",
    [(exif_rotated, 9), (letterboxed, 10), (big_jpegs, 3)],
    ids=["exif-rotated", "letterboxed", "4000x3000-jpeg"],
)
def test_the_mask_covers_the_digits_of_the_upright_original(client, make, count):
    uploads = make(count)
    results = predict(client, "digits-segment", uploads)
    masks = [mask_of(result) for result in results]
    for mask, upload, result in zip(masks, uploads, results):
        assert mask.shape == upload.classes.shape == (result["height"], result["width"])
    assert mean_iou(masks, [u.classes for u in uploads]) >= TARGET_MIOU


def test_transparent_areas_stay_clear_in_the_mask_and_digits_are_colored(client):
    digits, labels = digit_pool("test")
    rng = np.random.default_rng([4444, 5])
    scenes = [compose_scene(rng, digits, labels, transparent=True, size=(200, 150)) for _ in range(6)]
    files = []
    for scene in scenes:
        buffer = io.BytesIO()
        scene.image.save(buffer, "PNG")
        files.append((io.BytesIO(buffer.getvalue()), "sticker.png"))
    response = client.post(
        "/api/v1/predict", data={"model": "digits-segment", "file": files}, content_type="multipart/form-data"
    )
    for scene, result in zip(scenes, response.get_json()["results"]):
        mask = np.asarray(mask_image(result).convert("RGBA"))
        alpha = np.asarray(scene.image.getchannel("A"))
        assert mask[..., 3][alpha == 0].max(initial=0) == 0  # clear stays clear
        ink = scene.classes > 0
        assert (mask[..., 3][ink] > 0).mean() > 0.8  # the digits are painted, however see-through they are
        assert (mask_of(result)[ink] == scene.classes[ink]).mean() > 0.8


def test_return_image_answers_with_the_mask_png_at_the_original_size(client):
    (upload,) = big_jpegs(1)
    response = client.post(
        "/api/v1/predict",
        data={"model": "digits-segment", "return": "image", "file": (io.BytesIO(upload.data), upload.name)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert Image.open(io.BytesIO(response.data)).size == (4000, 3000)


def test_the_registry_loads_offloads_and_unloads_it_and_batches_match_single_images(app):
    registry = app.extensions["ai_service"].registry
    registry.load("digits-segment")
    model = registry.get("digits-segment")
    assert isinstance(model, DigitsSegmentModel) and model.weight_bytes()["cpu"] > 0
    images = [scene.image for scene in scene_set("test", 3, 8)]
    options = ModelOptions()
    batch = model.preprocess(images, options)
    together = model.postprocess(model.forward(batch.tensor), batch.states(), options)
    for image, result in zip(images, together):
        alone = model.preprocess([image], options)
        (single,) = model.postprocess(model.forward(alone.tensor), alone.states(), options)
        same = np.asarray(single["mask"]) == np.asarray(result["mask"])
        assert same.mean() > 0.999
    registry.offload("digits-segment")
    assert registry.resolve("digits-segment").state == "offloaded"
    registry.unload("digits-segment")
    assert registry.resolve("digits-segment").state == "registered" and model.weight_bytes() == {}
    model.load(torch.device("cpu"))
    model.unload()


@pytest.mark.parametrize("name", ["digit-scene.jpg", "digit-sticker.png"])
def test_the_example_scenes_are_outlined_with_a_legend_of_their_digits(client, name):
    seed, size, transparent = SCENES[name]
    truth = compose_scene(np.random.default_rng(seed), *digit_pool("test"), transparent=transparent, size=size)
    data = client.get(f"/api/v1/models/digits-segment/examples/{name}").data
    (result,) = predict(client, "digits-segment", [Upload(name, data, truth.boxes, truth.labels, truth.classes)])
    assert mean_iou([mask_of(result)], [truth.classes]) >= TARGET_MIOU
    assert {str(label) for label in truth.labels} <= {entry["label"] for entry in result["classes"]}


def test_the_result_page_without_javascript_shows_the_legend(client):
    (upload,) = plain(1)
    page = client.post("/predict", data={"model": "digits-segment", "file": (io.BytesIO(upload.data), upload.name)})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'class="mask-legend"' in html and 'class="mask-overlay"' in html
    for label in {str(label) for label in upload.labels}:
        assert f"<strong>{label}</strong>" in html
    assert 'class="swatch clear"' in html and '<rect width="1" height="1" fill="#' in html
