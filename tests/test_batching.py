"""The batcher's policy, checked on recorded batch composition (never on wall time).

A fake forward blocks on a gate so that the tests decide exactly what is queued while a batch runs.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from ai_service.engine.batcher import Batcher, DeadlineExceeded, Overloaded

LONG = 60_000.0  # ms: a wait this long would hang the test, so passing proves no such wait happened
FAR = 3600.0  # s: a deadline that never passes during a test


class GatedForward:
    """A fake model forward: records each batch; the first call blocks until `release()`."""

    def __init__(self, block_first: bool = True) -> None:
        self.batches: list[list[torch.Tensor]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not block_first:
            self.gate.set()

    def __call__(self, samples: list[torch.Tensor]) -> list[float]:
        if len({tuple(s.shape) for s in samples}) != 1:
            raise AssertionError("samples of different shapes reached one forward")
        self.batches.append(samples)
        self.entered.set()
        assert self.gate.wait(30), "test never released the gate"
        if any(torch.isnan(s).any() for s in samples):
            raise ValueError("NaN input")
        return list(torch.stack(samples).flatten(1).sum(1).tolist())

    def release(self) -> None:
        self.gate.set()


def make_batcher(forward: GatedForward, **overrides) -> Batcher:
    options = {"max_batch_size": 8, "max_delay_ms": LONG, "max_queue": 64, "idle_exit_s": 30.0} | overrides
    return Batcher("fake", forward, **options)


def submit(batcher: Batcher, tag: str, value: float = 1.0, shape=(1, 4, 4), deadline: float | None = None):
    """One request with one sample, announced and submitted at once."""
    with batcher.arrival(1) as arrival:
        sample = torch.full(shape, value)
        return arrival.submit([sample], deadline or time.perf_counter() + FAR, tags=[tag])[0]


def finish(batcher: Batcher, tickets) -> None:
    batcher.wait(tickets, time.perf_counter() + 30)


@pytest.fixture
def forward():
    gated = GatedForward()
    yield gated
    gated.release()


def test_lone_request_runs_at_once_without_the_max_delay(forward):
    forward.release()
    batcher = make_batcher(forward)
    ticket = submit(batcher, "alone")
    finish(batcher, [ticket])
    record = batcher.history[-1]
    assert record.tags == ("alone",) and record.waited is False
    assert ticket.output == 16.0 and ticket.batch_size == 1 and ticket.error is None
    batcher.close()


def test_requests_queued_during_a_forward_form_the_next_batch(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    queued = [submit(batcher, tag) for tag in "bcd"]
    forward.release()
    finish(batcher, [first, *queued])
    assert [record.tags for record in batcher.history] == [("a",), ("b", "c", "d")]
    assert [record.waited for record in batcher.history] == [False, False]
    assert [ticket.batch_size for ticket in (first, *queued)] == [1, 3, 3, 3]
    batcher.close()


def test_collector_waits_only_for_requests_already_on_their_way(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    late = batcher.arrival(1)
    arrival = late.__enter__()  # announced: still decoding when the next batch is collected
    ready = submit(batcher, "b")
    forward.release()
    while batcher.stats()["queued"]:  # the collector has taken "b" and is now waiting for "c"
        time.sleep(0.001)
    arrival.submit([torch.ones(1, 4, 4)], time.perf_counter() + FAR, tags=["c"])
    late.__exit__(None, None, None)
    finish(batcher, [first, ready])
    assert [record.tags for record in batcher.history] == [("a",), ("b", "c")]
    assert batcher.history[-1].waited is True
    batcher.close()


def test_a_request_that_gives_up_before_submitting_ends_the_wait(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    with batcher.arrival(1):
        ready = submit(batcher, "b")
        forward.release()
        while batcher.stats()["queued"]:
            time.sleep(0.001)
    # leaving the arrival without submitting (e.g. the upload was not an image) releases the collector
    finish(batcher, [first, ready])
    assert [record.tags for record in batcher.history] == [("a",), ("b",)]
    batcher.close()


def test_max_batch_size_splits_a_long_queue_in_order(forward):
    batcher = make_batcher(forward, max_batch_size=2)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    queued = [submit(batcher, tag) for tag in "bcdef"]
    forward.release()
    finish(batcher, [first, *queued])
    assert [record.tags for record in batcher.history] == [("a",), ("b", "c"), ("d", "e"), ("f",)]
    batcher.close()


def test_samples_of_different_sizes_never_share_a_batch(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    small = [submit(batcher, tag, shape=(1, 4, 4)) for tag in ("s1", "s2")]
    large = [submit(batcher, tag, shape=(1, 8, 8)) for tag in ("l1", "l2")]
    mixed = [small[0], large[0], small[1], large[1]]
    forward.release()
    finish(batcher, [first, *mixed])
    assert [record.tags for record in batcher.history] == [("a",), ("s1", "s2"), ("l1", "l2")]
    assert [ticket.output for ticket in mixed] == [16.0, 64.0, 16.0, 64.0]
    batcher.close()


def test_a_bad_sample_fails_alone(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    good1, bad, good2 = submit(batcher, "g1"), submit(batcher, "bad", value=float("nan")), submit(batcher, "g2")
    forward.release()
    finish(batcher, [first, good1, bad, good2])
    assert good1.error is None and good2.error is None and good1.output == good2.output == 16.0
    assert isinstance(bad.error, ValueError)
    isolated = [record.tags for record in batcher.history if record.isolated]
    assert isolated == [("g1",), ("bad",), ("g2",)]
    assert batcher._thread is not None  # the inference thread survived the failure
    batcher.close()


def test_full_queue_refuses_new_requests(forward):
    batcher = make_batcher(forward, max_queue=2)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    queued = [submit(batcher, "b"), submit(batcher, "c")]
    with pytest.raises(Overloaded):
        submit(batcher, "d")
    forward.release()
    finish(batcher, [first, *queued])
    assert [record.tags for record in batcher.history] == [("a",), ("b", "c")]
    submit(batcher, "after")  # room again once the queue drained
    batcher.close()


def test_announced_requests_count_against_the_queue(forward):
    batcher = make_batcher(forward, max_queue=3)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    with batcher.arrival(3):
        with pytest.raises(Overloaded):
            batcher.arrival(1).__enter__()
    forward.release()
    finish(batcher, [first])
    batcher.close()


def test_an_empty_queue_admits_a_request_larger_than_the_limit(forward):
    forward.release()
    batcher = make_batcher(forward, max_queue=2)
    with batcher.arrival(5) as arrival:
        tickets = arrival.submit([torch.ones(1, 4, 4)] * 5, time.perf_counter() + FAR)
    finish(batcher, tickets)
    assert sum(record.size for record in batcher.history) == 5
    batcher.close()


def test_deadline_cancels_a_request_still_in_the_queue(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    deadline = time.perf_counter() + 0.05
    doomed = submit(batcher, "doomed", deadline=deadline)
    with pytest.raises(DeadlineExceeded):
        batcher.wait([doomed], deadline)
    assert doomed.cancelled and batcher.stats()["queued"] == 0
    forward.release()
    finish(batcher, [first])
    assert [record.tags for record in batcher.history] == [("a",)]
    batcher.close()


def test_a_sample_past_its_deadline_is_failed_without_running(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    expired = submit(batcher, "expired", deadline=time.perf_counter() - 1)
    fresh = submit(batcher, "fresh")
    forward.release()
    finish(batcher, [first, fresh])
    assert expired.done.wait(10) and isinstance(expired.error, DeadlineExceeded)
    assert [record.tags for record in batcher.history] == [("a",), ("fresh",)]
    batcher.close()


def test_idle_thread_exits_and_comes_back_on_demand(forward):
    forward.release()
    batcher = make_batcher(forward, idle_exit_s=0.01)
    finish(batcher, [submit(batcher, "a")])
    for _ in range(1000):
        if batcher._thread is None:
            break
        time.sleep(0.01)
    assert batcher._thread is None
    finish(batcher, [submit(batcher, "b")])
    assert [record.tags for record in batcher.history] == [("a",), ("b",)]
    batcher.close()


def test_close_drains_the_queue_and_refuses_new_work(forward):
    batcher = make_batcher(forward)
    first = submit(batcher, "a")
    assert forward.entered.wait(10)
    queued = submit(batcher, "b")
    closer = threading.Thread(target=batcher.close)
    closer.start()
    forward.release()
    closer.join(10)
    assert first.done.is_set() and queued.done.is_set() and queued.error is None
    with pytest.raises(RuntimeError):
        submit(batcher, "late")


def test_a_fast_model_waits_no_longer_than_its_own_forward(forward):
    forward.release()
    batcher = make_batcher(forward)  # max delay one minute: only the forward-time cap can end the wait
    for tag in ("w1", "w2", "w3"):
        finish(batcher, [submit(batcher, tag)])
    with batcher.arrival(1):  # announced, never submitted while the batch is collected
        ready = submit(batcher, "b")
        finish(batcher, [ready])
    assert batcher.history[-1].tags == ("b",) and batcher.history[-1].waited is True
    batcher.close()


def test_out_of_memory_splits_the_batch_and_retries_a_lone_sample_once():
    calls: list[int] = []

    def run(samples):
        calls.append(len(samples))
        if len(samples) > 1 or len(calls) == 2:  # the batch, then the first lone attempt
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [float(sample.sum()) for sample in samples]

    batcher = Batcher("oom", run, max_batch_size=8, max_delay_ms=0, max_queue=64)
    with batcher.arrival(3) as arrival:
        tickets = arrival.submit([torch.ones(1, 2, 2)] * 3, time.perf_counter() + FAR)
    finish(batcher, tickets)
    assert [ticket.error for ticket in tickets] == [None, None, None] and tickets[0].output == 4.0
    assert calls == [3, 1, 1, 1, 1]  # batch, first alone (OOM), same again after freeing memory, the others
    batcher.close()


class ThreadRecordingForward(GatedForward):
    """GatedForward that also records which thread ran each batch."""

    def __init__(self, block_first: bool = True) -> None:
        super().__init__(block_first)
        self.threads: list[str] = []

    def __call__(self, samples: list[torch.Tensor]) -> list[float]:
        self.threads.append(threading.current_thread().name)
        return super().__call__(samples)


def test_a_cheap_lone_request_runs_in_its_own_thread():
    forward = ThreadRecordingForward(block_first=False)
    batcher = make_batcher(forward, inline=lambda count: count <= 2)
    ticket = submit(batcher, "alone")
    assert ticket.done.is_set() and ticket.output == 16.0 and ticket.batch_size == 1
    assert forward.threads == [threading.current_thread().name]
    assert batcher.stats()["running"] is False  # no inference thread was needed
    batcher.close()


def test_requests_arriving_during_an_inline_forward_queue_for_the_next_batch():
    forward = ThreadRecordingForward()
    batcher = make_batcher(forward, inline=lambda count: True)
    results = {}
    runner = threading.Thread(target=lambda: results.setdefault("a", submit(batcher, "a")), name="request-a")
    runner.start()
    assert forward.entered.wait(10)  # "a" is running inline in its own thread and holds the model
    queued = [submit(batcher, tag) for tag in "bc"]  # not inline: the model is busy
    assert batcher.stats()["queued"] == 2 and forward.batches == [forward.batches[0]]
    forward.release()
    runner.join(10)
    finish(batcher, [results["a"], *queued])
    assert [record.tags for record in batcher.history] == [("a",), ("b", "c")]
    assert forward.threads == ["request-a", "infer-fake"]
    batcher.close()


def test_a_request_with_others_on_their_way_is_not_run_inline():
    forward = ThreadRecordingForward(block_first=False)
    batcher = make_batcher(forward, inline=lambda count: True, max_delay_ms=50)
    with batcher.arrival(1):  # another request is still decoding
        ticket = submit(batcher, "a")
        finish(batcher, [ticket])
    assert forward.threads == ["infer-fake"]
    batcher.close()
