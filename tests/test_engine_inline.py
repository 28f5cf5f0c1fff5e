"""The inline path: a lone request that finds its model free runs the forward in its own thread, and nothing the
inference thread guarantees is lost (one forward at a time, batches under load, priority, metrics)."""

from __future__ import annotations

import threading
import time

import torch

from ai_service.engine.batcher import Batcher
from ai_service.observability import metrics

FAR = 3600.0  # s: a deadline that never passes during a test
LONG = 60_000.0  # ms: a batching wait this long would hang the test


class Forward:
    """A fake one-core forward: records who ran each batch and how many forwards overlapped."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.sizes: list[int] = []
        self.threads: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, samples: list[torch.Tensor]) -> list[float]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.sizes.append(len(samples))
            self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        time.sleep(self.hold_s)  # releases the GIL, as a torch forward does
        with self._lock:
            self.running -= 1
        return [float(sample.sum()) for sample in samples]


def request(batcher: Batcher, value: float, bulk: bool = False) -> float:
    """What service.predict does: announce, submit, wait, read the output."""
    with batcher.arrival(1, bulk=bulk) as arrival:
        tickets = arrival.submit([torch.full((1, 2, 2), value)], time.perf_counter() + FAR)
    batcher.wait(tickets, time.perf_counter() + 30)
    assert tickets[0].error is None
    return tickets[0].output


def inline_batcher(forward: Forward, **overrides) -> Batcher:
    options = {"max_batch_size": 8, "max_delay_ms": LONG, "max_queue": 64, "inline": lambda count: True}
    return Batcher("inline-test", forward, **(options | overrides))


def test_an_idle_model_runs_the_request_in_its_own_thread_and_records_its_metrics():
    forward = Forward()
    batcher = inline_batcher(forward)
    batches, waits = (_count(metric) for metric in (metrics.BATCH_SIZE, metrics.QUEUE_WAIT))
    assert request(batcher, 1.0) == 4.0
    assert forward.threads == [threading.current_thread().name] and batcher.stats()["running"] is False
    assert (batcher.batches, batcher.samples) == (1, 1) and batcher.history[-1].size == 1
    assert (_count(metrics.BATCH_SIZE), _count(metrics.QUEUE_WAIT)) == (batches + 1, waits + 1)
    batcher.close()


def _count(histogram) -> float:
    """Observations of the test model's series of a Prometheus histogram."""
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("model") == "inline-test":
                return sample.value
    return 0.0


def test_requests_arriving_during_an_inline_forward_are_batched_together():
    forward = Forward()
    forward.gate.clear()
    batcher = inline_batcher(forward)
    first = threading.Thread(target=request, args=(batcher, 1.0), name="first")
    first.start()
    assert forward.entered.wait(10)  # "first" holds the model
    others = [threading.Thread(target=request, args=(batcher, 2.0), name=f"r{i}") for i in range(5)]
    for thread in others:
        thread.start()
    while batcher.stats()["queued"] < 5:
        time.sleep(0.001)
    forward.gate.set()
    for thread in [first, *others]:
        thread.join(10)
    assert forward.sizes == [1, 5] and forward.threads[0] == "first"
    assert forward.most_at_once == 1
    batcher.close()


def test_one_forward_at_a_time_and_batches_form_under_concurrent_load():
    forward = Forward(hold_s=0.002)
    batcher = inline_batcher(forward, max_delay_ms=1.0)
    outputs: list[float] = []

    def client(value: float) -> None:
        for _ in range(40):
            outputs.append(request(batcher, value))

    clients = [threading.Thread(target=client, args=(float(i),)) for i in range(8)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert sorted(outputs) == sorted(4.0 * i for i in range(8) for _ in range(40))  # each got its own answer
    assert forward.most_at_once == 1  # inline forwards and the inference thread's share one model
    assert max(forward.sizes) > 1 and sum(forward.sizes) == 320
    assert any(name.startswith("infer-") for name in forward.threads)  # queued work goes to the thread
    batcher.close()


def test_a_bulk_request_does_not_run_inline_ahead_of_an_announced_interactive_one():
    forward = Forward()
    batcher = inline_batcher(forward)
    with batcher.arrival(1) as page:  # an interactive request still decoding
        with batcher.arrival(1, bulk=True) as job:
            bulk = job.submit([torch.ones(1, 2, 2)], time.perf_counter() + FAR, tags=["job"])
        assert not bulk[0].done.is_set()  # queued, not run inline
        interactive = page.submit([torch.ones(1, 2, 2)], time.perf_counter() + FAR, tags=["page"])
    batcher.wait(bulk + interactive, time.perf_counter() + 30)
    assert all(name.startswith("infer-") for name in forward.threads)
    batcher.close()


class CountingCondition(threading.Condition):
    """A Condition that counts its notify_all calls (each one wakes a parked inference thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeups = 0

    def notify_all(self) -> None:
        self.wakeups += 1
        super().notify_all()


def test_inline_requests_leave_the_parked_inference_thread_asleep():
    forward = Forward()
    allowed = {"inline": False}
    batcher = inline_batcher(forward, inline=lambda count: allowed["inline"])
    batcher._cond = CountingCondition()
    request(batcher, 1.0)  # not yet known to be small: the inference thread runs it, then parks
    assert forward.threads[0].startswith("infer-") and batcher.stats()["running"] is True
    allowed["inline"] = True
    before = batcher._cond.wakeups
    for _ in range(20):
        request(batcher, 1.0)
    assert all(not name.startswith("infer-") for name in forward.threads[1:])
    assert batcher._cond.wakeups == before  # nothing queued: nobody to wake (two thread switches per request saved)
    assert batcher.stats()["running"] is True
    batcher.close()
