"""The engine around the batcher: forward runner, core budget, options, and the predict path over HTTP."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from conftest import digit_variants, encode
from engine_doubles import GatedModel
from loguru import logger
from PIL import Image

from ai_service import create_app
from ai_service.engine.engine import Engine
from ai_service.engine.runner import ForwardRunner, bucket_pieces, bucket_sizes
from ai_service.models.base import Batch, ImageModel, ModelInfo, ModelOptions
from ai_service.models.pytree import merge_batches, split_batch
from ai_service.server import cores
from ai_service.server.cores import CoreBudget
from ai_service.service.predict import predict
from ai_service.service.upload import Upload
from ai_service.settings import ConfigError, EngineSettings


def png(value: int, size: int = 16) -> bytes:
    return encode(Image.new("L", (size, size), value))


@pytest.fixture
def gated_app(home):
    app = create_app({"TESTING": True, "home": str(home), "max_queue": 2, "request_timeout_s": 2.0})
    model = GatedModel()
    app.extensions["ai_service"].registry.register(model)
    yield app, model
    model.gate.set()
    app.extensions["ai_service"].engine.close()


def post(app, *images: bytes, model: str = "gated"):
    files = [(io.BytesIO(data), f"{index}.png") for index, data in enumerate(images)]
    return app.test_client().post("/api/v1/predict", data={"file": files, "model": model})


def in_background(function, *args) -> tuple[threading.Thread, list]:
    box: list = []
    thread = threading.Thread(target=lambda: box.append(function(*args)))
    thread.start()
    return thread, box


def test_full_queue_answers_503_with_retry_after(gated_app):
    app, model = gated_app
    running, _ = in_background(post, app, png(10))
    assert model.entered.wait(10)
    batcher = app.extensions["ai_service"].engine.batcher(model)
    waiting = [in_background(post, app, png(20)), in_background(post, app, png(30))]
    while batcher.stats()["queued"] < 2:
        time.sleep(0.001)
    response = post(app, png(40))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "overloaded"
    model.gate.set()
    for thread, _ in [(running, None), *waiting]:
        thread.join(10)
    assert all(box[0].status_code == 200 for _, box in waiting)
    assert model.batch_sizes == [1, 2]  # the two that queued during the first forward ran together


def test_missed_deadline_answers_504(home):
    app = create_app({"TESTING": True, "home": str(home), "request_timeout_s": 0.2})
    model = GatedModel()
    app.extensions["ai_service"].registry.register(model)
    try:
        response = post(app, png(10))
        assert response.status_code == 504 and response.get_json()["error"]["code"] == "timeout"
    finally:
        model.gate.set()
        app.extensions["ai_service"].engine.close()


def test_timing_splits_every_stage_and_reports_the_batch_size(gated_app):
    app, model = gated_app
    model.gate.set()
    body = post(app, png(0), png(255)).get_json()
    assert body["batch_size"] == 2 and model.batch_sizes == [2]
    assert {"decode", "preprocess", "queue", "forward", "postprocess", "total"} <= set(body["timing_ms"])
    assert [result["brightness"] for result in body["results"]] == [0.0, 1.0]


def test_a_bad_upload_in_a_batch_fails_alone(gated_app):
    app, model = gated_app
    model.gate.set()
    results = post(app, png(255), b"not an image", png(0)).get_json()["results"]
    assert [result.get("brightness") for result in results] == [1.0, None, 0.0]
    assert results[1]["error"]["code"] == "unsupported_format"


def test_an_image_that_breaks_preprocess_fails_alone(gated_app, monkeypatch):
    app, model = gated_app
    model.gate.set()
    original = GatedModel.preprocess

    def picky(self, images, options):
        if any(image.width == 3 for image in images):
            raise ValueError("too narrow")
        return original(self, images, options)

    monkeypatch.setattr(GatedModel, "preprocess", picky)
    results = post(app, png(255), png(0, size=3), png(0)).get_json()["results"]
    assert results[0]["brightness"] == 1.0 and results[2]["brightness"] == 0.0
    assert results[1]["status"] == 422 and results[1]["error"]["code"] == "invalid_image"


def test_digits_batched_equal_digits_alone(app, digits_split):
    runtime = app.extensions["ai_service"]
    uploads = [
        Upload(data, name)
        for index in range(0, 12, 3)
        for name, (data, _) in digit_variants(digits_split.test_images[index]).items()
    ]
    together = predict(runtime, "digits", uploads, ModelOptions(top_k=3))
    alone = [predict(runtime, "digits", [upload], ModelOptions(top_k=3)).results[0] for upload in uploads]
    assert together.batch_size == min(len(uploads), 8)  # 20 images: batches of the CPU default, 8
    for batched, single in zip(together.results, alone):
        assert [p["label"] for p in batched["predictions"]] == [p["label"] for p in single["predictions"]]
        assert np.allclose(
            [p["score"] for p in batched["predictions"]], [p["score"] for p in single["predictions"]], atol=1e-4
        )


def test_split_and_merge_round_trip_every_output_shape():
    tensor = torch.arange(12.0).view(3, 4)
    outputs = {"logits": tensor, "extra": (tensor * 2, tensor * 3)}
    parts = split_batch(outputs, 3)
    assert parts[1]["logits"].shape == (1, 4) and torch.equal(parts[2]["extra"][1], tensor[2:3] * 3)
    merged = merge_batches(parts)
    assert torch.equal(merged["logits"], tensor) and torch.equal(merged["extra"][0], tensor * 2)
    detections = [{"boxes": torch.zeros(0, 4)}, {"boxes": torch.ones(2, 4)}]
    assert merge_batches(split_batch(detections, 2)) == detections
    assert len(split_batch(torch.zeros(8, 2), 5)) == 5  # padding rows are dropped


def test_bucket_sizes_cover_every_batch_size():
    assert bucket_sizes(8) == [1, 2, 4, 8] and bucket_sizes(12) == [1, 2, 4, 8, 12] and bucket_sizes(1) == [1]


def test_bucket_pieces_add_up_to_the_batch_largest_first():
    assert bucket_pieces(5, 8) == [4, 1] and bucket_pieces(7, 8) == [4, 2, 1] and bucket_pieces(8, 8) == [8]
    assert bucket_pieces(11, 12) == [8, 2, 1] and bucket_pieces(20, 8) == [8, 8, 4] and bucket_pieces(0, 8) == []


class ConvModel(ImageModel):
    """Records what reaches forward: memory format, dtype and batch shapes."""

    info = ModelInfo(name="conv", input_size=(8, 8), input_mode="L")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool, torch.dtype]] = []
        self.threads: list[int] = []

    def load(self, device: torch.device) -> None:
        torch.manual_seed(0)
        self.network = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
        self.network(torch.zeros(1, 1, 8, 8))
        self.network.eval()
        self.device = device

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        output = self.network(batch)
        self.seen.append((batch.shape[0], batch.is_contiguous(memory_format=torch.channels_last), output.dtype))
        self.threads.append(torch.get_num_threads())
        return output

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[None]:
        return Batch(torch.zeros(len(images), 1, 8, 8))

    def postprocess(self, outputs: torch.Tensor, items: Sequence[None], options: ModelOptions) -> list[dict[str, Any]]:
        return [{} for _ in items]


def test_runner_uses_channels_last_and_returns_float32_under_bf16_autocast():
    model = ConvModel()
    model.load(torch.device("cpu"))
    runner = ForwardRunner(model, EngineSettings(precision="bf16"), max_batch_size=4)
    outputs = runner([torch.rand(1, 8, 8) for _ in range(3)])
    assert len(outputs) == 3 and all(o.shape == (1, 2) and o.dtype == torch.float32 for o in outputs)
    size, channels_last, dtype = model.seen[0]
    assert size == 3 and channels_last and dtype == torch.bfloat16
    assert model.network[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_runner_warms_each_bucket_first_and_cuts_cpu_batches_into_buckets():
    model = ConvModel()
    model.load(torch.device("cpu"))
    runner = ForwardRunner(model, EngineSettings(compile=True, compile_backend="eager"), max_batch_size=4)
    samples = [torch.rand(1, 8, 8) for _ in range(3)]
    outputs = runner(samples)
    # A warm-up of every bucket, then 3 as 2 + 1: padding to 4 would cost a whole image's compute on the CPU.
    assert [size for size, _, _ in model.seen] == [1, 2, 4, 2, 1]
    with torch.inference_mode():
        reference = model.network(torch.stack(samples).contiguous(memory_format=torch.channels_last))
    assert len(outputs) == 3 and all(torch.allclose(output, reference[i : i + 1]) for i, output in enumerate(outputs))
    runner([torch.rand(1, 8, 8)])
    assert [size for size, _, _ in model.seen][-1] == 1  # no second warm-up for a known shape
    padded = runner._pad(torch.rand(3, 1, 8, 8))  # how a CUDA batch reaches its bucket: padding rows are free there
    assert padded.shape[0] == 4 and padded.is_contiguous(memory_format=torch.channels_last)


def test_inductor_on_the_cpu_compiles_with_frozen_weights(monkeypatch):
    import torch._inductor.config

    frozen: list[bool] = []

    def recording_compile(function, **_):
        def compiled(batch):
            frozen.append(torch._inductor.config.freezing)
            return function(batch)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    model = ConvModel()
    model.load(torch.device("cpu"))
    runner = ForwardRunner(model, EngineSettings(compile=True, compile_backend="inductor"), max_batch_size=2)
    runner([torch.rand(1, 8, 8)])
    assert frozen == [True, True, False]  # both buckets compile frozen; the patch ends with the warm-up
    assert torch._inductor.config.freezing is False


def test_a_compilation_that_fails_falls_back_to_eager_and_keeps_serving(monkeypatch):
    """Seen on an H200: inductor raised on the first batch and every request got a 500; now one warning, then eager."""

    def broken_compile(function, **_):
        def compiled(batch):
            raise RuntimeError("inductor: no working C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = ConvModel()
    model.load(torch.device("cpu"))
    runner = ForwardRunner(model, EngineSettings(compile=True, compile_backend="eager"), max_batch_size=4)
    reference = model.network(torch.rand(1, 1, 8, 8)).shape
    messages: list[str] = []
    handler = logger.add(lambda message: messages.append(str(message)), level="WARNING")
    try:
        outputs = runner([torch.rand(1, 8, 8) for _ in range(3)])
        runner([torch.rand(1, 8, 8)])
    finally:
        logger.remove(handler)
    assert len(outputs) == 3 and outputs[0].shape == reference
    # An eager warm-up of one, then eager batches: no padding to buckets, no second compilation attempt.
    assert [size for size, _, _ in model.seen] == [1, 3, 1]
    assert len(messages) == 1
    assert "torch.compile failed, serving it eager (RuntimeError: inductor: no working C++ compiler)" in messages[0]


def test_core_budget_gives_a_lone_forward_every_core_and_shares_under_load():
    slots = [0, 0]
    first, second = CoreBudget(total=4, slots=slots, slot=0), CoreBudget(total=4, slots=slots, slot=1)
    assert first.take() == 4
    assert second.take() == 1  # never zero, even when the others hold every core
    first.give(4)
    assert second.take() == 3 and slots == [0, 4]
    assert first.take() == 1
    second.give(1), second.give(3), first.give(1)
    assert slots == [0, 0]
    previous = torch.get_num_threads()
    try:
        with CoreBudget(total=4).threads(fixed=2) as granted:
            assert granted == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_a_lone_forward_takes_only_its_share_while_another_worker_has_requests_in_flight():
    """Its forward would otherwise start beside the other worker's next one: three threads on two cores."""
    slots = [0, 0]
    first, second = CoreBudget(total=4, slots=slots, slot=0), CoreBudget(total=4, slots=slots, slot=1)
    with second.in_flight(), second.in_flight():
        assert slots == [0, cores.IN_FLIGHT]
        assert first.take() == 2  # the fair share, not every idle core
        assert second.take() == 2 and slots == [2, cores.IN_FLIGHT + 2]  # first holds no request: every idle core
        second.give(2)
        first.give(2)
    assert slots == [0, 0]
    assert first.take() == 4  # nobody else has work: every core
    first.give(4)


def test_engine_settings_are_validated(home):
    with pytest.raises(ValueError, match="bf16"):
        EngineSettings(precision="fp8")
    assert EngineSettings(precision=" BF16 ", compile_mode="Max-Autotune").precision == "bf16"
    with pytest.raises(ConfigError, match="AI_SERVICE_MAX_QUEUE"):
        create_app({"home": str(home), "max_queue": 0})
    with pytest.raises(ConfigError, match="AI_SERVICE_PRECISION"):
        create_app({"home": str(home), "amp": "fp8"})  # the old name still reaches the setting


def test_per_model_batch_settings_override_the_defaults(app):
    registry, engine = app.extensions["ai_service"].registry, app.extensions["ai_service"].engine
    default = engine.batcher(registry.get("digits"))
    assert default.max_batch_size == 8 and default.max_delay_s == engine.settings.max_batch_delay_ms / 1000
    tuned = type(registry.get("digits"))()
    tuned.max_batch_size, tuned.max_batch_delay_ms = 3, 0.0
    tuned.load(torch.device("cpu"))
    batcher = engine.batcher(tuned)
    assert batcher.max_batch_size == 3 and batcher.max_delay_s == 0.0


def test_forward_threads_follow_the_load(monkeypatch):
    monkeypatch.setattr(cores, "_budget", CoreBudget(total=4, slots=[0, 0], slot=0))
    previous = torch.get_num_threads()
    model = ConvModel()
    model.load(torch.device("cpu"))
    samples = [torch.rand(1, 8, 8)]
    try:
        alone = ForwardRunner(model, EngineSettings(), 4, under_load=lambda: False)
        alone(samples)  # not measured yet: one core, so the measurement is the one-core cost
        alone._one_core_ms_per_sample = 30.0  # as if measured: resnet-sized
        alone(samples)  # alone: every core
        alone._one_core_ms_per_sample = 30.0
        alone(samples * 2)  # a batch means traffic
        busy = ForwardRunner(model, EngineSettings(), 4, under_load=lambda: True)
        busy._one_core_ms_per_sample = 30.0
        busy(samples)  # requests waiting: this worker's share of the cores
        busy._one_core_ms_per_sample = 0.01  # as if measured: far under SMALL_FORWARD_MS
        busy(samples)  # a tiny forward: one core
        ForwardRunner(model, EngineSettings(torch_threads=3), 4)(samples)  # AI_SERVICE_TORCH_THREADS wins
    finally:
        torch.set_num_threads(previous)
    assert model.threads == [1, 4, 2, 2, 1, 3]


def test_a_busy_moment_never_makes_a_tiny_forward_look_big():
    """The one-core estimate follows a faster forward at once and a slower one slowly (contention, first calls)."""
    model = ConvModel()
    model.load(torch.device("cpu"))
    runner = ForwardRunner(model, EngineSettings(), 4)
    runner._one_core_ms_per_sample = 1000.0  # a first forward slowed down by set-up or other processes
    runner([torch.rand(1, 8, 8)])
    assert runner._one_core_ms_per_sample < 100.0  # an average would still say 700 ms: "big", every core


def test_batchnorm_is_folded_into_convolutions_without_changing_results():
    import torchvision

    model = ConvModel()
    model.load(torch.device("cpu"))
    torch.manual_seed(0)
    model.network = torchvision.models.resnet18(num_classes=4).eval()
    sample = torch.rand(3, 64, 64)
    with torch.inference_mode():
        expected = model.network(sample.unsqueeze(0))
    output = ForwardRunner(model, EngineSettings(), 4)([sample])[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.network.modules())
    assert torch.allclose(output, expected, atol=1e-4)


def test_only_measured_one_core_cpu_forwards_run_inline():
    model = ConvModel()
    model.load(torch.device("cpu"))
    runner = ForwardRunner(model, EngineSettings(), 4)
    assert not runner.runs_inline(1)  # nothing measured yet: the first forward goes to the inference thread
    runner._one_core_ms_per_sample = 0.2
    assert runner.runs_inline(1) and runner.runs_inline(8)
    runner._one_core_ms_per_sample = 30.0  # resnet-sized: needs the inference thread's OpenMP team
    assert not runner.runs_inline(1)
    pinned = ForwardRunner(model, EngineSettings(torch_threads=2), 4)
    pinned._one_core_ms_per_sample = 0.2
    assert not pinned.runs_inline(1)


def test_lone_digits_requests_run_in_the_request_thread(app, digits_split):
    """After its first (measured) forward, a lone digits request skips the inference thread."""
    runtime = app.extensions["ai_service"]
    registry = runtime.registry
    image = Image.fromarray(digits_split.test_images[0], mode="L")
    uploads = [Upload(encode(image, "png"), "d.png")]
    threads: list[str] = []
    hook = registry.get("digits").network.register_forward_hook(
        lambda *_: threads.append(threading.current_thread().name)
    )
    try:
        # cache=False: the same image twelve times must reach the engine, not the result cache
        outcomes = [predict(runtime, "digits", uploads, ModelOptions(), cache=False) for _ in range(12)]
    finally:
        hook.remove()
    assert all(o.results[0]["predictions"] == outcomes[0].results[0]["predictions"] for o in outcomes)
    assert threads[0].startswith("infer-digits")  # the first forward is measured on the inference thread
    assert threads[-1] == threading.current_thread().name  # once it is known to be tiny: inline


def test_the_engine_compiles_a_preloaded_model_at_load_not_in_its_first_request():
    model = ConvModel()
    model.load(torch.device("cpu"))
    Engine(EngineSettings()).warm(model)
    assert model.seen == []  # nothing to compile: the first forward is a request's
    engine = Engine(EngineSettings(compile=True, compile_backend="eager", max_batch_size=4))
    engine.warm(model)
    assert [size for size, _, _ in model.seen] == [1, 2, 4]
    batcher, deadline = engine.batcher(model), time.monotonic() + 10
    with batcher.arrival(1) as arrival:
        tickets = arrival.submit([torch.rand(1, 8, 8)], deadline)
    batcher.wait(tickets, deadline)
    assert tickets[0].output.shape == (1, 2)
    assert [size for size, _, _ in model.seen] == [1, 2, 4, 1]  # the request found every bucket warm
    engine.close()


def test_create_app_warms_preloaded_models_when_compiling(home):
    from ai_service import create_app

    settings = {"home": str(home), "preload": "digits", "compile": "1", "compile_backend": "eager"}
    app = create_app({"TESTING": True, **settings})
    runtime = app.extensions["ai_service"]
    _, _, runner = runtime.engine._batchers["digits@1.0"]
    assert runner._compiled and len(runner._warmed) == 1  # digits' 1×28×28 input, compiled before any request
    runtime.close()
