import threading
import time
import weakref

import pytest
import torch

from ai_service.models import base
from ai_service.models.base import Batch, ImageModel, ModelInfo, scored_rows, top_k_predictions
from ai_service.models.registry import ModelLoadError, ModelRegistry, UnknownModelError


class CountingModel(ImageModel):
    """A real (tiny) network whose load is slow enough to race and counts how often it ran."""

    def __init__(self, name: str = "counting", fail: bool = False) -> None:
        super().__init__()
        self.info = ModelInfo(name=name, input_size=(4, 4), labels=("a", "b"))
        self.loads = 0
        self.fail = fail

    def load(self, device: torch.device) -> None:
        self.loads += 1
        time.sleep(0.05)
        if self.fail:
            raise OSError("weights file missing")
        self.network = torch.nn.Linear(16, 2).to(device).eval()
        self.device = device

    def preprocess(self, images, options):
        return Batch(torch.zeros(len(images), 16))

    def postprocess(self, outputs, items, options):
        return [{} for _ in items]


@pytest.fixture
def registry():
    return ModelRegistry(torch.device("cpu"))


def test_register_and_list(registry):
    registry.register(CountingModel("one"))
    registry.register(CountingModel("two"))
    assert registry.names() == ["one", "two"]
    assert [s["state"] for s in registry.statuses()] == ["registered", "registered"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(CountingModel("one"))


def test_unknown_model(registry):
    with pytest.raises(UnknownModelError):
        registry.get("nope")


def test_concurrent_first_requests_load_exactly_once(registry):
    model = CountingModel()
    registry.register(model)
    barrier = threading.Barrier(8)
    got = []

    def worker():
        barrier.wait()
        got.append(registry.get("counting"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert model.loads == 1 and len(got) == 8 and all(m is model for m in got)
    assert registry.loaded_names() == ["counting"]


def test_failed_load_is_recorded_and_retried_later(registry):
    model = CountingModel(fail=True)
    registry.register(model)
    with pytest.raises(ModelLoadError, match="weights file missing"):
        registry.get("counting")
    status = registry.statuses()[0]
    assert status["state"] == "failed" and "weights file missing" in status["error"]
    model.fail = False
    assert registry.get("counting").loaded


def test_unload_drops_the_network(registry):
    model = CountingModel()
    registry.register(model)
    network_ref = weakref.ref(registry.get("counting").network)
    registry.unload("counting")
    assert network_ref() is None and registry.loaded_names() == []
    registry.get("counting")
    assert model.loads == 2


def test_model_info_rejects_unknown_task():
    with pytest.raises(ValueError):
        ModelInfo(name="x", task="poetry")


def test_top_k_predictions_are_sorted_probabilities():
    logits = torch.tensor([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    results = top_k_predictions(logits, ["a", "b", "c"], top_k=2)
    assert [p["label"] for p in results[0]["predictions"]] == ["b", "c"]
    assert results[1]["predictions"][0]["label"] == "a"
    assert sum(p["score"] for p in top_k_predictions(logits, "abc", 3)[0]["predictions"]) == pytest.approx(1, abs=1e-5)
    assert len(top_k_predictions(logits, "abc", 99)[0]["predictions"]) == 3


def test_python_and_torch_scoring_agree(monkeypatch):
    """Rows of few classes are scored in Python, wide ones in torch: same order, probabilities and entropy."""
    torch.manual_seed(0)
    for classes in (1, 2, 10, base.PYTHON_MAX_CLASSES):
        logits = torch.randn(8, classes) * 4
        k = min(3, classes)
        in_python = scored_rows(logits, k)
        monkeypatch.setattr(base, "PYTHON_MAX_CLASSES", 0)
        in_torch = scored_rows(logits, k)
        monkeypatch.undo()
        for (best_py, entropy_py), (best_torch, entropy_torch) in zip(in_python, in_torch):
            assert [i for _, i in best_py] == [i for _, i in best_torch]
            assert [p for p, _ in best_py] == pytest.approx([p for p, _ in best_torch], abs=1e-6)
            assert entropy_py == pytest.approx(entropy_torch, abs=1e-6)


def test_rows_with_non_finite_logits_keep_the_torch_answer():
    (best, entropy), _ = scored_rows(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]), 1)
    assert best[0][0] != best[0][0] and entropy != entropy  # NaN, as torch's softmax gives
