"""The bulk lane (job items) is low priority: checked on recorded batch composition, never on wall time.

A fake forward blocks on a gate so the tests decide exactly what is queued while a batch runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from conftest import encode
from engine_doubles import GatedModel
from PIL import Image

from ai_service.engine.batcher import Batcher, DeadlineExceeded, Overloaded
from ai_service.errors import ServiceError
from ai_service.models.base import ModelOptions
from ai_service.service.predict import BULK_DEADLINE_FACTOR, predict
from ai_service.service.runtime import build_runtime
from ai_service.service.upload import Upload
from ai_service.settings import load_settings

LONG = 60_000.0  # ms: a batch delay this long would hang the test, so passing proves no such wait happened
FAR = 3600.0  # s: a deadline that never passes during a test


class Gate:
    """A fake forward that records each batch; the first call blocks until `release()`."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, samples: list[torch.Tensor]) -> list[float]:
        self.entered.set()
        assert self.gate.wait(30), "test never released the gate"
        return [float(sample.sum()) for sample in samples]

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def forward():
    gate = Gate()
    yield gate
    gate.release()


def make_batcher(forward: Gate, **overrides: Any) -> Batcher:
    options = {"max_batch_size": 4, "max_delay_ms": LONG, "max_queue": 64, "idle_exit_s": 30.0} | overrides
    return Batcher("fake", forward, **options)


def send(batcher: Batcher, tags: Sequence[str], *, bulk: bool = False, shape=(1, 4, 4), until: float | None = None):
    """One request of len(tags) samples, announced and submitted at once."""
    with batcher.arrival(len(tags), bulk=bulk, until=until) as arrival:
        samples = [torch.ones(shape) for _ in tags]
        return arrival.submit(samples, time.perf_counter() + FAR, tags=list(tags))


def finish(batcher: Batcher, tickets) -> None:
    batcher.wait(tickets, time.perf_counter() + 30)


def compositions(batcher: Batcher) -> list[tuple]:
    return [record.tags for record in batcher.history]


def test_interactive_samples_go_before_bulk_ones_that_queued_earlier(forward):
    batcher = make_batcher(forward)
    first = send(batcher, ["first"])
    assert forward.entered.wait(10)
    bulk = send(batcher, ["b1", "b2", "b3"], bulk=True)
    interactive = send(batcher, ["i1"]) + send(batcher, ["i2"])
    forward.release()
    finish(batcher, first + bulk + interactive)
    assert compositions(batcher) == [("first",), ("i1", "i2", "b1", "b2"), ("b3",)]
    assert all(ticket.error is None and ticket.output == 16.0 for ticket in bulk + interactive)
    batcher.close()


def test_an_interactive_request_still_decoding_gets_its_place_before_bulk(forward):
    batcher = make_batcher(forward)
    first = send(batcher, ["first"])
    assert forward.entered.wait(10)
    bulk = send(batcher, ["b1", "b2", "b3"], bulk=True)
    late = batcher.arrival(1)
    arrival = late.__enter__()  # announced: still decoding when the next batch is collected
    ready = send(batcher, ["i1"])
    forward.release()
    while batcher.stats()["queued"]:  # the collector has taken "i1" and now waits for the late one
        time.sleep(0.001)
    tickets = arrival.submit([torch.ones(1, 4, 4)], time.perf_counter() + FAR, tags=["i2"])
    late.__exit__(None, None, None)
    finish(batcher, first + bulk + ready + tickets)
    assert compositions(batcher) == [("first",), ("i1", "i2", "b1", "b2"), ("b3",)]
    assert batcher.history[1].waited is True
    batcher.close()


def test_bulk_runs_when_there_is_no_interactive_work(forward):
    forward.release()
    batcher = make_batcher(forward)
    tickets = send(batcher, ["b1", "b2", "b3", "b4", "b5"], bulk=True)
    finish(batcher, tickets)
    assert compositions(batcher) == [("b1", "b2", "b3", "b4"), ("b5",)]
    assert [ticket.batch_size for ticket in tickets] == [4, 4, 4, 4, 1]
    batcher.close()


def test_an_interactive_shape_decides_the_batch_and_bulk_of_another_shape_waits(forward):
    batcher = make_batcher(forward)
    first = send(batcher, ["first"])
    assert forward.entered.wait(10)
    bulk = send(batcher, ["big1", "big2"], bulk=True, shape=(1, 8, 8))
    small = send(batcher, ["small"], shape=(1, 4, 4))
    forward.release()
    finish(batcher, first + bulk + small)
    assert compositions(batcher) == [("first",), ("small",), ("big1", "big2")]
    batcher.close()


def test_a_job_never_fills_the_interactive_queue(forward):
    batcher = make_batcher(forward, max_queue=2, max_batch_size=8)
    first = send(batcher, ["first"])
    assert forward.entered.wait(10)
    bulk = send(batcher, [f"b{index}" for index in range(1, 6)], bulk=True)  # more than max_queue
    interactive = send(batcher, ["i1"]) + send(batcher, ["i2"])  # still admitted
    with pytest.raises(Overloaded):  # the interactive bound itself still holds
        send(batcher, ["i3"])
    assert batcher.stats()["bulk_queued"] == 5 and batcher.stats()["queued"] == 2
    forward.release()
    finish(batcher, first + bulk + interactive)
    assert compositions(batcher) == [("first",), ("i1", "i2", "b1", "b2", "b3", "b4", "b5")]
    batcher.close()


def test_a_full_bulk_lane_makes_the_next_bulk_request_wait_for_room(forward):
    batcher = make_batcher(forward, max_bulk_queue=2)
    first = send(batcher, ["first"])
    assert forward.entered.wait(10)
    queued = send(batcher, ["a1", "a2"], bulk=True)
    with pytest.raises(Overloaded):  # no time left to wait for room
        send(batcher, ["late"], bulk=True, until=time.perf_counter())
    box: list = []
    waiter = threading.Thread(
        target=lambda: box.extend(send(batcher, ["t1"], bulk=True, until=time.perf_counter() + 30))
    )
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and batcher.stats()["bulk_arriving"] == 0  # not admitted while the lane is full
    forward.release()
    waiter.join(10)
    finish(batcher, first + queued + box)
    assert compositions(batcher) == [("first",), ("a1", "a2"), ("t1",)]
    batcher.close()


def test_bulk_arrivals_do_not_hold_back_an_interactive_batch(forward):
    batcher = make_batcher(forward)
    first = send(batcher, ["first"])
    assert forward.entered.wait(10)
    with batcher.arrival(3, bulk=True):  # a job still decoding: the collector must not wait for it (LONG delay)
        ready = send(batcher, ["i1"])
        forward.release()
        finish(batcher, first + ready)
    assert compositions(batcher) == [("first",), ("i1",)]
    assert batcher.history[-1].waited is False
    batcher.close()


def test_an_expired_or_cancelled_bulk_sample_never_runs(forward):
    batcher = make_batcher(forward)
    first = send(batcher, ["first"])
    assert forward.entered.wait(10)
    with batcher.arrival(2, bulk=True) as arrival:
        expired, kept = arrival.submit([torch.ones(1, 4, 4)] * 2, time.perf_counter() - 1, tags=["old", "x"])
    kept.deadline = time.perf_counter() + FAR
    dropped = send(batcher, ["dropped"], bulk=True)
    batcher.cancel(dropped)
    forward.release()
    finish(batcher, first + [kept])
    assert expired.done.wait(10) and isinstance(expired.error, DeadlineExceeded)
    assert compositions(batcher) == [("first",), ("x",)]
    assert batcher.pending == 0
    batcher.close()


def test_a_lone_bulk_request_may_run_inline_like_any_other():
    ran_in: list[str] = []

    def run(samples: list[torch.Tensor]) -> list[float]:
        ran_in.append(threading.current_thread().name)
        return [1.0] * len(samples)

    batcher = Batcher("fake", run, max_batch_size=4, max_delay_ms=LONG, max_queue=4, inline=lambda count: True)
    tickets = send(batcher, ["b1", "b2"], bulk=True)
    assert all(ticket.done.is_set() for ticket in tickets)
    assert ran_in == [threading.current_thread().name]
    batcher.close()


def png(value: int) -> bytes:
    return encode(Image.new("L", (16, 16), value))


def test_predict_bulk_outlives_the_interactive_deadline_and_does_not_overload_the_page(home):
    assert BULK_DEADLINE_FACTOR * 0.3 >= 3.0  # the job's deadline, far past the page's
    settings = load_settings({"home": str(home), "request_timeout_s": 0.3, "max_queue": 1})
    settings.ensure_dirs()
    runtime = build_runtime(settings)
    model = GatedModel()
    runtime.registry.register(model)
    opts = ModelOptions(top_k=1)
    try:
        holder = threading.Thread(
            target=lambda: _quietly(predict, runtime, "gated", [Upload(png(1), "hold.png")], opts)
        )
        holder.start()
        assert model.entered.wait(10)
        job: list = []
        uploads = [Upload(png(value), f"{value}.png") for value in (0, 128, 255)]  # more than max_queue
        runner = threading.Thread(target=lambda: job.append(predict(runtime, "gated", uploads, opts, bulk=True)))
        runner.start()
        batcher = runtime.engine.batcher(model)
        while batcher.stats()["bulk_queued"] < 3:
            time.sleep(0.001)
        with pytest.raises(ServiceError) as refused:  # admitted (a job never fills the page's queue), then too slow
            predict(runtime, "gated", [Upload(png(7), "page.png")], opts)
        assert refused.value.code == "timeout" and refused.value.details["timeout_s"] == 0.3
        assert runner.is_alive()  # the job's images outlive the interactive deadline
        model.gate.set()
        runner.join(10)
        holder.join(10)
        outcome = job[0]
        assert [result["brightness"] for result in outcome.results] == [0.0, 0.502, 1.0]
        assert model.batch_sizes[-1] == 3
    finally:
        model.gate.set()
        runtime.close()


def _quietly(function, *args) -> None:
    """Run a call whose own outcome does not matter to the test (here: a request held past its deadline)."""
    try:
        function(*args)
    except ServiceError:
        pass
