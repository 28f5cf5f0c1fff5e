"""digits-detect: mAP@0.5 ≥ 0.9 on held-out scenes through the real HTTP API, and boxes that land on the digits of
the upright original whatever the geometry path: EXIF rotation, letterboxing, a 4000×3000 JPEG decoded reduced."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scene_support import Upload, big_jpegs, exif_rotated, letterboxed, plain, predict

from ai_service.models.base import ModelOptions
from ai_service.models.builtin.digits_detect import SCORE_THRESHOLD, WEIGHTS_PATH, DigitsDetectModel
from ai_service.models.builtin.make_examples import SCENES
from ai_service.models.builtin.scene_training import MAP_THRESHOLD
from ai_service.models.builtin.scenes import box_iou, compose_scene, digit_pool, mean_average_precision, scene_set

TARGET_MAP = 0.9
#: A found digit's box against its composed ground truth (mean over the digits found).
TARGET_IOU = 0.75


def mean_ap(results: list[dict], uploads) -> float:
    return mean_average_precision([r["detections"] for r in results], [(u.boxes, u.labels) for u in uploads])


def matched_iou(results: list[dict], uploads) -> float:
    """Mean IoU of each ground-truth digit with the best box read as the same digit (found digits only)."""
    overlaps = []
    for result, upload in zip(results, uploads):
        for box, label in zip(upload.boxes, upload.labels):
            same = [d["box"] for d in result["detections"] if d["index"] == label]
            best = float(box_iou(box, np.array(same)).max()) if same else 0.0
            if best >= 0.5:
                overlaps.append(best)
    return float(np.mean(overlaps))


def test_the_committed_weights_are_small():
    assert WEIGHTS_PATH.stat().st_size < 1_000_000


def test_map_on_held_out_scenes_reaches_the_target(client):
    uploads = plain(40)
    results = predict(client, "digits-detect", uploads, score_threshold=str(MAP_THRESHOLD))
    assert mean_ap(results, uploads) >= TARGET_MAP
    assert matched_iou(results, uploads) >= TARGET_IOU
    shown = predict(client, "digits-detect", uploads)
    first = shown[0]["detections"][0]
    assert set(first) >= {"label", "index", "score", "box"} and first["label"] == str(first["index"])
    assert all(d["score"] >= SCORE_THRESHOLD for r in shown for d in r["detections"])  # what the page shows
    assert mean_ap(shown, uploads) >= 0.8


@pytest.mark.parametrize(
    "make, count",
    [(exif_rotated, 12), (letterboxed, 12), (big_jpegs, 6)],
    ids=["exif-rotated", "letterboxed", "4000x3000-jpeg"],
)
def test_boxes_land_on_the_digits_of_the_upright_original(client, make, count):
    uploads = make(count)
    results = predict(client, "digits-detect", uploads, score_threshold=str(MAP_THRESHOLD))
    assert mean_ap(results, uploads) >= TARGET_MAP
    assert matched_iou(results, uploads) >= TARGET_IOU
    for result in results:
        geometry = result["geometry"]
        assert geometry["fit"] == "letterbox"
        if make is exif_rotated:
            assert geometry["exif_rotated"] and result["width"] == 224 and result["height"] == 160
        if make is letterboxed:
            assert sum(geometry["padding"]) >= 60
        if make is big_jpegs:
            assert (result["width"], result["height"]) == (4000, 3000) and geometry["decoded_size"] == [500, 375]


def test_a_score_threshold_keeps_fewer_boxes(client):
    uploads = plain(4)
    loose = predict(client, "digits-detect", uploads, score_threshold="0.05")
    strict = predict(client, "digits-detect", uploads, score_threshold="0.9")
    assert sum(len(r["detections"]) for r in strict) < sum(len(r["detections"]) for r in loose)
    assert all(d["score"] >= 0.9 for r in strict for d in r["detections"])


def test_batched_results_equal_one_at_a_time():
    model = DigitsDetectModel()
    model.load(torch.device("cpu"))
    images = [scene.image for scene in scene_set("test", 3, 7)] + [Image.new("L", (20, 300), 128)]
    options = ModelOptions()
    batch = model.preprocess(images, options)
    together = model.postprocess(model.forward(batch.tensor), batch.states(), options)
    for image, result in zip(images, together):
        alone = model.preprocess([image], options)
        (single,) = model.postprocess(model.forward(alone.tensor), alone.states(), options)
        assert [d["label"] for d in single["detections"]] == [d["label"] for d in result["detections"]]
        for mine, theirs in zip(single["detections"], result["detections"]):
            assert np.allclose(mine["box"], theirs["box"], atol=0.05)


def test_the_registry_loads_offloads_and_unloads_it(app, client):
    registry = app.extensions["ai_service"].registry
    upload = plain(1)
    first = predict(client, "digits-detect", upload)
    assert registry.resolve("digits-detect").state == "loaded"
    assert registry.resolve("digits-detect").model.weight_bytes()["cpu"] > 0
    registry.offload("digits-detect")
    assert registry.resolve("digits-detect").state == "offloaded"
    offloaded = predict(client, "digits-detect", upload)  # served again after coming back from CPU RAM
    assert [d["box"] for d in offloaded[0]["detections"]] == [d["box"] for d in first[0]["detections"]]
    registry.unload("digits-detect")
    assert registry.resolve("digits-detect").state == "registered"
    assert registry.resolve("digits-detect").model.weight_bytes() == {}
    again = predict(client, "digits-detect", upload)
    assert [d["box"] for d in again[0]["detections"]] == [d["box"] for d in first[0]["detections"]]


@pytest.mark.parametrize("name", ["digit-scene.jpg", "digit-sticker.png"])
def test_the_example_scenes_show_every_digit_found_and_read(client, name):
    seed, size, transparent = SCENES[name]
    truth = compose_scene(np.random.default_rng(seed), *digit_pool("test"), transparent=transparent, size=size)
    data = client.get(f"/api/v1/models/digits-detect/examples/{name}").data
    (result,) = predict(client, "digits-detect", [Upload(name, data, truth.boxes, truth.labels, truth.classes)])
    for box, label in zip(truth.boxes, truth.labels):  # every digit is boxed, and read right by its best box there
        here = [d for d in result["detections"] if box_iou(box, np.array(d["box"]))[0, 0] >= 0.5]
        assert here and max(here, key=lambda d: d["score"])["index"] == label, (label, here)
