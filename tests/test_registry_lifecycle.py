"""Registry lifecycle: versions, leases, offload/reload, LRU eviction under a count or byte budget, release hooks."""

import gc
import threading
import time
import weakref

import pytest
import torch

from ai_service.models.base import Batch, ImageModel, ModelInfo
from ai_service.models.registry import (
    ModelBusyError,
    ModelLoadError,
    ModelRegistry,
    ModelStateError,
    UnknownModelError,
    version_key,
)


class SizedModel(ImageModel):
    """A model holding `floats` float32 weights plus a cache dict of tensors (as real models cache kernels)."""

    def __init__(self, name: str, version: str = "1", floats: int = 1000) -> None:
        super().__init__()
        self.info = ModelInfo(name=name, version=version, input_size=(2, 2), labels=("a", "b"))
        self.floats = floats
        self.loads = 0

    def load(self, device: torch.device) -> None:
        self.loads += 1
        self.network = torch.nn.Linear(self.floats // 2, 2, bias=False).to(device)
        self.cache = {"kernel": torch.ones(self.floats // 2, device=device)}
        self.device = device

    def preprocess(self, images, options):
        return Batch(torch.zeros(len(images), self.floats // 2))

    def postprocess(self, outputs, items, options):
        return [{} for _ in items]


def cpu_registry(**kwargs) -> ModelRegistry:
    return ModelRegistry(torch.device("cpu"), **kwargs)


def test_versions_resolve_newest_by_default_and_by_name_at_version():
    registry = cpu_registry()
    for version in ("2", "10", "1.5"):
        registry.register(SizedModel("net", version))
    assert registry.versions("net") == ["1.5", "2", "10"]
    assert registry.resolve("net").info.version == "10"
    assert registry.resolve("net@2").info.version == "2"
    assert registry.get("net@1.5") is registry.resolve("net@1.5").model
    with pytest.raises(UnknownModelError) as raised:
        registry.resolve("net@3")
    assert "net@10" in raised.value.available
    with pytest.raises(ValueError, match="already registered"):
        registry.register(SizedModel("net", "2"))
    defaults = {s["key"]: s["default"] for s in registry.statuses()}
    assert defaults == {"net@1.5": False, "net@2": False, "net@10": True}


def test_version_ordering_is_natural():
    assert sorted(["1.10", "1.2", "1.9"], key=version_key) == ["1.2", "1.9", "1.10"]
    assert max(["2024-01-05", "2024-01-10"], key=version_key) == "2024-01-10"


def test_model_names_that_break_addressing_are_refused():
    for bad in ("a@b", "has space", "../x", ""):
        with pytest.raises(ValueError):
            ModelInfo(name=bad)


def test_unload_drops_every_tensor_reference_including_caches():
    registry = cpu_registry()
    model = SizedModel("net")
    registry.register(model)
    with registry.using("net") as leased:
        network, kernel = weakref.ref(leased.network), weakref.ref(leased.cache["kernel"])
        assert registry.resolve("net").in_use == 1
    registry.unload("net")
    gc.collect()
    assert network() is None and kernel() is None
    assert model.cache is None and registry.resolve("net").state == "registered"
    assert registry.get("net").loaded and model.loads == 2


def test_status_reports_parameters_and_bytes():
    registry = cpu_registry()
    registry.register(SizedModel("net", floats=1000))
    registry.load("net")
    status = registry.statuses()[0]
    assert status["parameters"] == 1000
    assert status["bytes_on_device"] == 1000 * 4 + 500 * 4
    assert status["state"] == "loaded" and status["loads"] == 1 and status["last_used"] is not None


def test_offload_keeps_weights_and_reloads_transparently():
    registry = cpu_registry(eviction="offload")
    model = SizedModel("net")
    registry.register(model)
    network = registry.get("net").network
    registry.offload("net")
    assert registry.resolve("net").state == "offloaded" and model.network is network
    with registry.using("net") as leased:
        assert leased.network is network
    assert model.loads == 1 and registry.resolve("net").state == "loaded"
    registry.unload("net")
    with pytest.raises(ModelStateError):
        registry.offload("net")


def test_max_loaded_models_evicts_least_recently_used_first():
    registry = cpu_registry(max_loaded=2)
    models = {name: SizedModel(name) for name in ("a", "b", "c")}
    for model in models.values():
        registry.register(model)
    registry.get("a")
    time.sleep(0.01)
    registry.get("b")
    time.sleep(0.01)
    registry.get("a")  # a is now more recent than b
    time.sleep(0.01)
    registry.get("c")
    assert registry.loaded_names() == ["a", "c"]
    assert registry.resolve("b").state == "registered" and models["b"].network is None
    registry.get("b")  # transparently reloaded, evicting a (least recently used now)
    assert registry.loaded_names() == ["b", "c"] and models["b"].loads == 2


def test_byte_budget_evicts_until_the_new_model_fits():
    per_model = 1000 * 4 + 500 * 4
    registry = cpu_registry(memory_budget=int(per_model * 2.5), eviction="offload")
    for name in ("a", "b", "c"):
        registry.register(SizedModel(name))
        registry.get(name)
        time.sleep(0.01)
    assert registry.loaded_names() == ["b", "c"]
    assert registry.resolve("a").state == "offloaded"
    assert registry.memory()["models_bytes_on_device"] == 2 * per_model
    registry.get("a")
    assert registry.loaded_names() == ["a", "c"] and registry.resolve("b").state == "offloaded"


def test_models_in_use_are_never_evicted():
    registry = cpu_registry(max_loaded=1)
    registry.register(SizedModel("a"))
    registry.register(SizedModel("b"))
    with registry.using("a"):
        with registry.using("b") as b:
            assert b.loaded
            assert sorted(registry.loaded_names()) == ["a", "b"]  # over the limit rather than pull a busy model
    registry.get("a")
    assert registry.loaded_names() == ["a"]


def test_unload_waits_for_requests_in_flight_and_gives_up_after_a_timeout():
    registry = cpu_registry()
    registry.register(SizedModel("net"))
    entered, release = threading.Event(), threading.Event()

    def request():
        with registry.using("net"):
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=request)
    worker.start()
    entered.wait(5)
    with pytest.raises(ModelBusyError):
        registry.unload("net", timeout=0.05)
    assert registry.resolve("net").state == "loaded"
    threading.Timer(0.05, release.set).start()
    registry.unload("net", timeout=5)
    worker.join(5)
    assert registry.resolve("net").state == "registered"


def test_concurrent_leases_during_eviction_all_succeed():
    registry = cpu_registry(max_loaded=1)
    for name in ("a", "b", "c"):
        registry.register(SizedModel(name))
    errors = []

    def hammer(name):
        try:
            for _ in range(20):
                with registry.using(name) as model:
                    assert model.network is not None
                    model.network(torch.zeros(1, 500))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(name,)) for name in ("a", "b", "c") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_release_listeners_hear_about_unload_offload_and_eviction():
    registry = cpu_registry(max_loaded=1)
    heard = []
    registry.on_release(lambda model: heard.append(model.info.name))
    registry.on_release(lambda model: 1 / 0)  # a broken listener must not stop the others or the unload
    registry.register(SizedModel("a"))
    registry.register(SizedModel("b"))
    registry.get("a")
    registry.get("b")
    registry.offload("b")
    registry.unload("b")
    assert heard == ["a", "b", "b"]


def test_out_of_memory_while_loading_evicts_idle_models_and_retries():
    class HungryModel(SizedModel):
        def load(self, device):
            self.loads += 1
            if self.loads == 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            super().load(device)

    registry = cpu_registry()
    registry.register(SizedModel("idle"))
    registry.register(HungryModel("hungry"))
    registry.get("idle")
    assert registry.get("hungry").loaded
    assert registry.loaded_names() == ["hungry"]


def test_out_of_memory_that_eviction_cannot_fix_says_every_worker_holds_a_copy():
    class TooBig(SizedModel):
        def load(self, device):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    registry = cpu_registry()
    registry.register(TooBig("huge"))
    with pytest.raises(ModelLoadError, match="every gunicorn worker holds its own copy.*AI_SERVICE_WORKERS"):
        registry.get("huge")


def test_failure_records_are_listed_and_refuse_use():
    registry = cpu_registry()
    registry.register_failure("broken plugin", "plugin broken plugin.py", "ImportError: no module named x")
    status = registry.statuses()[-1]
    assert status["state"] == "failed" and status["source"] == "plugin broken plugin.py"
    with pytest.raises(ModelLoadError, match="ImportError"):
        registry.get(status["name"])
    with pytest.raises(UnknownModelError):
        registry.get("something-else")


def test_warmup_runs_a_dummy_batch_at_load():
    class Warm(SizedModel):
        warmed = 0

        def postprocess(self, outputs, items, options):
            Warm.warmed += 1
            return [{} for _ in items]

    registry = cpu_registry(warmup=True)
    registry.register(Warm("w"))
    registry.get("w")
    assert Warm.warmed == 1


def test_failed_loads_are_retried_by_requests_only_after_a_pause_but_at_once_when_asked():
    class Flaky(SizedModel):
        broken = True

        def load(self, device):
            if self.broken:
                self.loads += 1
                raise OSError("weights file is being copied")
            super().load(device)

    registry = cpu_registry(retry_failed_after=60)
    model = Flaky("flaky")
    registry.register(model)
    with pytest.raises(ModelLoadError, match="being copied"):
        registry.get("flaky")
    model.broken = False
    with pytest.raises(ModelLoadError, match="retrying after 60s"):
        registry.get("flaky")
    assert model.loads == 1
    assert registry.load("flaky").state == "loaded" and model.loads == 2


def test_replacing_a_loaded_model_unloads_the_old_one():
    registry = cpu_registry()
    old = SizedModel("net")
    registry.register(old)
    registry.get("net")
    new = SizedModel("net")
    registry.register(new, replace=True)
    assert old.network is None and registry.get("net") is new


def test_concurrent_first_leases_load_exactly_once():
    class Slow(SizedModel):
        def load(self, device):
            time.sleep(0.05)
            super().load(device)

    registry = cpu_registry()
    model = Slow("slow")
    registry.register(model)
    barrier = threading.Barrier(8)
    seen = []

    def request():
        barrier.wait()
        with registry.using("slow") as leased:
            seen.append(leased.network)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert model.loads == 1 and len(seen) == 8 and all(network is seen[0] for network in seen)
    assert registry.resolve("slow").in_use == 0
