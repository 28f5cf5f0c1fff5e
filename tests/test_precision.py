"""Reduced precision per model, served only when the load-time accuracy check passes (models/precision.py)."""

from __future__ import annotations

import torch
import torchvision

from ai_service import create_app
from ai_service.models import precision
from ai_service.models.base import ModelOptions
from ai_service.models.catalog import build_registry
from ai_service.settings import load_settings

CPU = torch.device("cpu")
BF16_NATIVE = precision.native_support("bf16", CPU)


def registry_for(home, **overrides):
    settings = load_settings({"home": str(home), "log_to_file": False, "load_plugins": False, **overrides})
    return build_registry(settings, CPU)


def write_near_tie_resnet(home, precision_line: str = "    precision: bf16\n") -> None:
    """A torchvision resnet18 (random init, no download) whose two logits differ by less than bf16 can tell
    apart: fp32 says class 1, bf16 rounds both to 1.0 and says class 0 on every image, so the check must fail."""
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=2)
    with torch.no_grad():
        network.fc.weight.zero_()
        network.fc.bias.copy_(torch.tensor([1.0, 1.001]))
    torch.save(network.state_dict(), models / "tie.pt")
    (home / "models.yaml").write_text(
        "models:\n"
        "  - name: near-tie\n"
        "    kind: state_dict\n"
        "    architecture: resnet18\n"
        "    num_classes: 2\n"
        "    weights: tie.pt\n"
        "    input_size: [64, 64]\n"
        "    labels: [a, b]\n" + precision_line
    )


def test_fp32_is_the_default_and_measures_nothing(tmp_path):
    registry = registry_for(tmp_path)
    registry.load("digits")
    status = registry.status(registry.resolve("digits"))
    assert status["precision"] == "fp32"
    assert status["precision_check"] == {
        "requested": "fp32",
        "used": "fp32",
        "metric": None,
        "value": None,
        "tolerance": None,
        "samples": 0,
        "reason": "fp32 requested",
    }


def test_digits_keeps_bf16_when_its_examples_agree(tmp_path):
    registry = registry_for(tmp_path, precision="bf16")
    model = registry.get("digits")
    check = model.precision_check
    if not BF16_NATIVE:
        assert check.used == "fp32" and "natively" in check.reason  # clean fallback, nothing measured
        return
    assert check.used == "bf16" == model.precision_in_use
    assert check.metric == "top1_agreement" and check.value >= check.tolerance == 0.99
    assert check.samples == len(model.info.examples) > 0  # digits' own example images
    # The engine's forward runs under bf16 autocast, and answers come back as float32.
    from ai_service.engine import Engine

    engine = Engine(load_settings({"home": str(tmp_path)}).engine)
    sample = model.preprocess(precision.calibration_images(model)[:1], ModelOptions()).tensor[0]
    output = engine.batcher(model)._run([sample])[0]
    assert output.dtype == torch.float32
    engine.close()


def test_a_model_that_answers_differently_in_bf16_falls_back_to_fp32(tmp_path):
    write_near_tie_resnet(tmp_path)
    registry = registry_for(tmp_path)
    model = registry.get("near-tie")
    check = model.precision_check
    assert check.requested == "bf16" and check.used == "fp32" and model.precision_in_use == "fp32"
    if BF16_NATIVE:
        assert check.metric == "top1_agreement" and check.value == 0.0 and check.samples == 4  # synthetic images
        assert "misses the tolerance 0.99" in check.reason
    else:
        assert "natively" in check.reason


def test_a_declared_tolerance_and_calibration_folder_are_used(tmp_path):
    write_near_tie_resnet(tmp_path, "    precision: bf16\n    precision_tolerance: 0\n    calibration: calib\n")
    calib = tmp_path / "models" / "calib"
    calib.mkdir()
    for index, color in enumerate(("red", "blue", "white")):
        from PIL import Image

        Image.new("RGB", (80, 60), color).save(calib / f"{index}.png")
    (calib / "notes.txt").write_text("not an image")
    model = registry_for(tmp_path).get("near-tie")
    check = model.precision_check
    if BF16_NATIVE:
        assert check.used == "bf16" and check.samples == 3 and check.tolerance == 0
    else:
        assert check.used == "fp32"


def test_other_tasks_compare_the_largest_absolute_error(tmp_path):
    registry = registry_for(tmp_path, precision="auto")
    model = registry.get("upscale-2x")
    check = model.precision_check
    if BF16_NATIVE:
        assert check.requested == "auto" and check.metric == "max_abs_error"
        assert (check.used == "bf16") == (check.value <= precision.DEFAULT_MAX_ABS_ERROR)
    else:
        assert check.used == "fp32"


def test_unsupported_precision_falls_back_cleanly():
    class Fake:
        type = "mps"

    assert not precision.native_support("bf16", Fake())
    assert precision.resolve("auto", Fake()) == "fp32"
    assert precision.resolve("fp16", CPU) == "fp16"  # explicit requests are checked, not rewritten


def test_the_models_api_shows_the_precision_in_use(tmp_path):
    write_near_tie_resnet(tmp_path)
    app = create_app({"home": str(tmp_path), "log_to_file": False, "preload": "near-tie", "TESTING": True})
    try:
        models = {m["name"]: m for m in app.test_client().get("/api/v1/models").get_json()["models"]}
        assert models["near-tie"]["precision"] == "fp32"
        assert models["near-tie"]["precision_check"]["requested"] == "bf16"
        assert models["digits"]["precision"] is None and models["digits"]["precision_check"] is None  # not loaded
    finally:
        app.extensions["ai_service"].close()
