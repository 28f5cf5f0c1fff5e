"""The service layer without Flask: what the CLI and jobs will call (predict, convert, describe, lifecycle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import encode
from PIL import Image

from ai_service.errors import ServiceError
from ai_service.schemas import PredictOptions
from ai_service.service import describe
from ai_service.service.convert import convert, convert_options
from ai_service.service.lifecycle import manage
from ai_service.service.outputs import output_name
from ai_service.service.predict import PredictOutcome, predict
from ai_service.service.runtime import Runtime, build_runtime
from ai_service.service.upload import Upload
from ai_service.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runtime(home) -> Runtime:
    settings = load_settings({"home": str(home)})
    settings.ensure_dirs()
    runtime = build_runtime(settings)
    yield runtime
    runtime.close()


def options(runtime: Runtime, **fields):
    """Model options the way every caller builds them: validated PredictOptions plus the configured defaults."""
    return PredictOptions(**fields).model_options(runtime.settings.models.default_top_k)


def test_importing_the_service_layer_does_not_import_flask():
    code = (
        "import pkgutil, importlib, sys, ai_service.service as s\n"
        "names = [m.name for m in pkgutil.iter_modules(s.__path__)]\n"
        "[importlib.import_module(f'ai_service.service.{name}') for name in names]\n"
        "assert {'convert', 'describe', 'outputs', 'predict', 'runtime'} <= set(names), names\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_predict_digits_from_a_png(runtime, digits_split):
    from ai_service.models.builtin.digits_training import render_digit

    index = 0
    seven = encode(render_digit(digits_split.test_images[index], 64))
    outcome = predict(runtime, None, [Upload(seven, "digit.png")], options(runtime, top_k=2))
    assert isinstance(outcome, PredictOutcome)
    assert (outcome.model, outcome.task, outcome.batch_size) == ("digits", "classification", 1)
    result = outcome.results[0]
    assert result["index"] == 0 and result["filename"] == "digit.png" and len(result["predictions"]) == 2
    assert result["predictions"][0]["label"] == str(digits_split.test_labels[index])
    assert result["width"] == result["height"] == 64 and result["geometry"]["exif_orientation"] == 1
    assert {"decode", "preprocess", "forward", "postprocess", "total"} <= set(outcome.timing_ms)


def test_predict_keeps_inputs_rejected_before_decoding_in_request_order(runtime):
    white = encode(Image.new("L", (8, 8), 255))
    rejected = ServiceError("invalid_base64", "not base64", {"loc": ["images", 1]})
    outcome = predict(runtime, "digits@1.0", [Upload(white), rejected, Upload(b"nope")], options(runtime))
    assert [r["index"] for r in outcome.results] == [0, 1, 2]
    assert "predictions" in outcome.results[0]
    assert outcome.results[1] == {
        "index": 1,
        "filename": "",
        "status": 422,
        "error": {"code": "invalid_base64", "message": "not base64", "details": {"loc": ["images", 1]}},
    }
    assert outcome.results[2]["error"]["code"] == "unsupported_format"
    only_rejected = predict(runtime, None, [rejected], options(runtime))
    assert only_rejected.results[0]["status"] == 422 and only_rejected.timing_ms == {}
    assert "batch_size" not in only_rejected.as_dict()


def test_predict_with_an_unknown_model_is_unknown_model(runtime):
    with pytest.raises(ServiceError) as caught:
        predict(runtime, "nope", [Upload(b"")], options(runtime))
    assert caught.value.code == "unknown_model" and caught.value.status == 404
    assert "digits@1.0" in caught.value.details["available"]


def test_convert_without_flask(runtime):
    data = encode(Image.new("RGBA", (30, 20), (255, 0, 0, 128)))
    budget = runtime.settings.limits.max_pixels
    fields = {"operations": '[{"op": "resize", "width": 12, "height": 12, "fit": "letterbox"}]', "format": "webp"}
    outcome = convert(data, "../a b.png", convert_options({**fields, "quality": "80"}, budget), budget)
    assert (outcome.width, outcome.height, outcome.format, outcome.filename) == (12, 12, "webp", "a_b-converted.webp")
    assert outcome.source_format == "png" and outcome.source_size == (30, 20) and outcome.geometry is not None
    assert outcome.as_dict()["data_url"].startswith("data:image/webp;base64,")
    with pytest.raises(ServiceError) as caught:
        convert_options({"operations": '[{"op": "resize", "width": 0}]'}, 1000)
    assert caught.value.code == "validation_error" and caught.value.details[0]["loc"] == ["operations", 0, "width"]
    with pytest.raises(ServiceError) as caught:
        convert(b"", "a.png", convert_options({}, 1000), 1000)
    assert caught.value.code == "empty_file"


def test_describe_models_system_and_health(runtime):
    assert "digits" in {status["name"] for status in describe.list_models(runtime)}
    detail = describe.model_detail(runtime, "digits")
    assert detail["key"] == "digits@1.0" and detail["versions"] == ["1.0"] and detail["state"] == "registered"
    with pytest.raises(ServiceError) as caught:
        describe.model_detail(runtime, "digits@2")
    assert caught.value.code == "unknown_model"
    report = describe.system_report(runtime)
    assert report["device"]["type"] == "cpu" and "digits" in {m["name"] for m in report["models"]}
    assert describe.health(runtime)["status"] == "ok"


def test_readiness_waits_for_every_preloaded_model(home):
    settings = load_settings({"home": str(home), "preload": "digits,edges,no-such-model,broken"})
    runtime = build_runtime(settings)
    try:
        runtime.registry.register_failure("broken", "plugin:broken", "ImportError: nope")
        manage(runtime, "digits", "load")
        body = describe.readiness(runtime)
        assert body["status"] == "not_ready" and isinstance(body["pid"], int)
        assert body["models"] == {
            "digits": "loaded",
            "edges": "registered",
            "no-such-model": "unknown",
            "broken": "failed",
        }
        assert body["message"] == "Waiting for model(s) broken, edges, no-such-model to load."
        ready = build_runtime(load_settings({"home": str(home), "preload": "digits"}))
        manage(ready, "digits", "load")
        assert describe.readiness(ready) == {"status": "ready", "pid": body["pid"], "models": {"digits": "loaded"}}
        ready.close()
    finally:
        runtime.close()


def test_lifecycle_without_flask(runtime):
    assert manage(runtime, "digits", "load")["model"]["state"] == "loaded"
    assert manage(runtime, "digits", "unload")["model"]["state"] == "registered"
    with pytest.raises(ServiceError) as caught:
        manage(runtime, "digits", "explode")
    assert caught.value.code == "not_found"


def test_output_names_are_safe():
    assert output_name("../../etc/pass wd.png", "converted", "jpeg") == "pass_wd-converted.jpg"
    assert output_name("", "edges", "png") == "image-edges.png"
