"""Adaptive batching for one model: request threads enqueue samples, one inference thread runs batches.

The window adapts to traffic instead of taxing every request with a fixed delay:
- when the model is free and no other request is on its way, a lone sample runs at once — for a
  forward cheap enough to need one core (`inline`), in the request's own thread, skipping the two
  thread hand-offs (~0.1 ms, a third of a tiny model's whole forward);
- whatever queued while the previous batch ran goes into the next batch (continuous batching);
- the collector waits only while requests that already announced themselves are still
  decoding/preprocessing, i.e. only when a fuller batch is known to be coming, and never longer than
  `max_delay_ms` nor than a typical forward of this model takes (past that, running now and running
  the late ones in the next batch is faster: a 0.3 ms network never waits 5 ms).
Samples of different shape/dtype never share a batch; a sample that breaks a batch is retried
alone so it fails alone; the queue is bounded (Overloaded) and every sample carries a deadline.

Bulk work (job items, `arrival(n, bulk=True)`) is a low-priority lane so a big job never makes the upload page
wait: its samples queue apart; a batch takes interactive samples first (an interactive head decides the shape),
waits for announced interactive ones only, and fills the room left with bulk ones of that shape at dispatch; with
no interactive work bulk runs as usual. Bulk waits only while interactive samples fill whole batches, so its
deadline is longer (service.predict). Bulk has its own bound, so a job never makes the page `overloaded`, and a
bulk request that finds its bound full waits for room (until its deadline) instead of failing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from loguru import logger

from ai_service.devices import release_memory
from ai_service.observability import metrics

RunBatch = Callable[[list[torch.Tensor]], list[Any]]
#: Forwards seen before their typical duration caps the wait (the first ones include warm-up costs).
WARM_BATCHES = 3


class Overloaded(Exception):
    """The model's queue is full; the client should retry later (HTTP 503 + Retry-After)."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before its result was ready (HTTP 504)."""


class DeviceOutOfMemory(Exception):
    """The device ran out of memory even for this image alone, after freeing its caches (HTTP 503)."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the allocator message other devices raise as a RuntimeError."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


def sample_key(sample: torch.Tensor) -> tuple:
    """Samples may share a batch only when shape, dtype and device agree."""
    return (tuple(sample.shape), sample.dtype, str(sample.device))


@dataclass(eq=False)
class Ticket:
    """One image's trip through the batcher: its input sample, and later its output or error."""

    sample: torch.Tensor
    deadline: float
    tag: Any = None
    key: tuple = ()
    enqueued: float = 0.0
    started: float | None = None
    forward_ms: float = 0.0
    batch_size: int = 0
    output: Any = None
    error: BaseException | None = None
    cancelled: bool = False
    bulk: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def queue_ms(self) -> float:
        return 0.0 if self.started is None else (self.started - self.enqueued) * 1000.0


@dataclass(frozen=True)
class BatchRecord:
    """What one forward contained and why it was dispatched (kept for tests, stats and debugging)."""

    tags: tuple
    key: tuple
    waited: bool
    left_in_queue: int
    isolated: bool = False

    @property
    def size(self) -> int:
        return len(self.tags)


class Arrival:
    """A request that announced `expected` samples; holds its place until it submits or leaves."""

    def __init__(self, batcher: Batcher, expected: int, bulk: bool = False) -> None:
        self._batcher = batcher
        self.expected = expected
        self.bulk = bulk

    def submit(
        self, samples: Sequence[torch.Tensor], deadline: float, tags: Sequence[Any] | None = None
    ) -> list[Ticket]:
        """Enqueue the request's samples (possibly fewer than announced: bad images drop out)."""
        tags = list(tags) if tags is not None else [None] * len(samples)
        tickets = [
            Ticket(sample=sample, deadline=deadline, tag=tag, key=sample_key(sample), bulk=self.bulk)
            for sample, tag in zip(samples, tags)
        ]
        self._batcher._enqueue(self, tickets)
        return tickets

    def leave(self) -> None:
        """Withdraw whatever was announced and not submitted (decode failed, client error)."""
        if self.expected:
            self._batcher._withdraw(self)


class Batcher:
    """Queue + one inference thread for one model; see the module docstring for the policy."""

    def __init__(
        self,
        name: str,
        run: RunBatch,
        *,
        max_batch_size: int,
        max_delay_ms: float,
        max_queue: int,
        idle_exit_s: float = 10.0,
        history: int = 1000,
        label: str | None = None,
        inline: Callable[[int], bool] = lambda count: False,
        max_bulk_queue: int | None = None,
    ) -> None:
        self.name = name
        self.label = label or name  # the model label of the Prometheus series
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_delay_s = max(0.0, float(max_delay_ms)) / 1000.0
        self.max_queue = max(1, int(max_queue))
        self.max_bulk_queue = max(1, int(max_bulk_queue or max_queue))
        self.idle_exit_s = idle_exit_s
        self._run = run
        self._inline = inline  # may a forward of this many samples run in the submitting thread?
        self._queue: deque[Ticket] = deque()
        self._arriving = 0
        self._bulk: deque[Ticket] = deque()  # the low-priority lane: job items
        self._bulk_arriving = 0
        self._busy = False  # a forward (or the collection of its batch) is under way: one at a time
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.history: deque[BatchRecord] = deque(maxlen=history)
        self.batches = 0
        self.samples = 0
        self._typical_forward_s: float | None = None

    # -- request side ------------------------------------------------------------------------------

    def arrival(self, expected: int, *, bulk: bool = False, until: float | None = None) -> _ArrivalScope:
        """Announce a request of `expected` images; raises Overloaded when the queue has no room.

        `bulk`: the low-priority lane, which waits for room until `until` (perf_counter) before Overloaded."""
        return _ArrivalScope(self, expected, bulk, until)

    def _admit(self, expected: int, bulk: bool = False, until: float | None = None) -> Arrival:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError(f"the batcher of {self.name} is closed")
                if not bulk:
                    pending = len(self._queue) + self._arriving
                    if pending and pending + expected > self.max_queue:
                        raise Overloaded(f"model {self.name} has {pending} images waiting (limit {self.max_queue})")
                    self._arriving += expected
                    break
                pending = len(self._bulk) + self._bulk_arriving
                if not pending or pending + expected <= self.max_bulk_queue:
                    self._bulk_arriving += expected
                    break
                remaining = (until or 0.0) - time.perf_counter()
                if remaining <= 0:
                    raise Overloaded(
                        f"model {self.name} has {pending} bulk images waiting (limit {self.max_bulk_queue})"
                    )
                self._cond.wait(remaining)  # room comes when the collector takes bulk samples
        return Arrival(self, expected, bulk)

    def _enqueue(self, arrival: Arrival, tickets: list[Ticket]) -> None:
        now = time.perf_counter()
        with self._cond:
            self._settle(arrival)
            for ticket in tickets:
                ticket.enqueued = now
            alone = (
                tickets
                and not self._busy
                and not self._queue
                and not self._bulk
                and not self._arriving
                and not self._closed
                and len(tickets) <= self.max_batch_size
                and all(t.key == tickets[0].key for t in tickets)
            )
            if alone and self._inline(len(tickets)):
                self._busy = True
            else:
                (self._bulk if arrival.bulk else self._queue).extend(tickets)
                self._wake()
                return
        for _ in tickets:
            metrics.record_queue(self.label, 0, 0.0)
        self._execute(tickets, False, 0)

    def _wake(self) -> None:
        """Under the lock: get the inference thread (started if needed) to look at the queue. With nothing queued
        nobody waits for the model (bulk admission waits on `_take`/`cancel`), and waking the idle inference
        thread would cost every inline request two thread switches for nothing."""
        if not (self._queue or self._bulk):
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"infer-{self.name}", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _withdraw(self, arrival: Arrival) -> None:
        with self._cond:
            self._settle(arrival)
            self._cond.notify_all()

    def _settle(self, arrival: Arrival) -> None:
        """Under the lock: the arrival's announced images are no longer on their way."""
        if arrival.bulk:
            self._bulk_arriving -= arrival.expected
        else:
            self._arriving -= arrival.expected
        arrival.expected = 0

    def wait(self, tickets: Sequence[Ticket], deadline: float) -> None:
        """Block until every ticket is done; past the deadline, cancel them and raise DeadlineExceeded."""
        for ticket in tickets:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not ticket.done.wait(remaining):
                self.cancel(tickets)
                raise DeadlineExceeded(f"no result from model {self.name} before the deadline")
            if isinstance(ticket.error, DeadlineExceeded):
                raise ticket.error

    def cancel(self, tickets: Sequence[Ticket]) -> None:
        """Drop tickets whose request gave up; ones already running finish and are discarded."""
        with self._cond:
            for ticket in tickets:
                ticket.cancelled = True
            self._queue = deque(ticket for ticket in self._queue if not ticket.cancelled)
            self._bulk = deque(ticket for ticket in self._bulk if not ticket.cancelled)
            self._cond.notify_all()  # bulk requests waiting for room

    @property
    def pending(self) -> int:
        """Images queued or announced, bulk ones too (what a memory manager should not unload under)."""
        return len(self._queue) + self._arriving + len(self._bulk) + self._bulk_arriving

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self._queue),
            "arriving": self._arriving,
            "batches": self.batches,
            "samples": self.samples,
            "mean_batch_size": round(self.samples / self.batches, 3) if self.batches else 0.0,
            "max_batch_size": self.max_batch_size,
            "max_batch_delay_ms": self.max_delay_s * 1000.0,
            "max_queue": self.max_queue,
            "bulk_queued": len(self._bulk),
            "bulk_arriving": self._bulk_arriving,
            "max_bulk_queue": self.max_bulk_queue,
            "running": self._thread is not None,
            "busy": self._busy,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting work, let the thread drain the queue, and wait for it."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- inference thread --------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                batch, waited = self._collect()
                if not batch:
                    self._thread = None
                    return
                record_left = len(self._queue) + len(self._bulk)
            now = time.perf_counter()
            for ticket in batch:
                metrics.record_queue(self.label, record_left, now - ticket.enqueued)
            self._execute(batch, waited, record_left)

    def _collect(self) -> tuple[list[Ticket], bool]:
        """Under the lock: the next batch, waiting for more samples only while some are known to be coming.

        Marks the batcher busy as soon as it holds a batch, so no request runs inline meanwhile. Bulk samples
        fill the batch last, after the wait: an interactive request still decoding gets its place first."""
        while True:
            while not (self._queue or self._bulk) or self._busy:
                if self._closed and not (self._queue or self._bulk):
                    return [], False
                if not self._cond.wait(self.idle_exit_s) and not (self._queue or self._bulk):
                    return [], False
            batch = self._take(None, self.max_batch_size, bulk=False) or self._take(None, self.max_batch_size)
            if batch:
                self._busy = True
                break
        waited = False
        delay = self.max_delay_s
        if self._typical_forward_s is not None and self.batches >= WARM_BATCHES:
            delay = min(delay, self._typical_forward_s)
        if delay > 0 and len(batch) < self.max_batch_size and self._arriving > 0:
            cutoff = time.perf_counter() + delay
            while len(batch) < self.max_batch_size and self._arriving > 0 and not self._closed:
                remaining = cutoff - time.perf_counter()
                if remaining <= 0:
                    break
                waited = True
                self._cond.wait(remaining)
                batch += self._take(batch[0].key, self.max_batch_size - len(batch), bulk=False)
        if len(batch) < self.max_batch_size and self._bulk:
            batch += self._take(batch[0].key, self.max_batch_size - len(batch))
        return batch, waited

    def _take(self, key: tuple | None, room: int, bulk: bool = True) -> list[Ticket]:
        """Remove up to `room` live tickets with `key` (the head's key if None), oldest first: interactive
        ones, then (`bulk`) bulk ones in the room they left (an interactive head decides the key)."""
        taken: list[Ticket] = []
        now = time.perf_counter()
        self._queue = self._pick(self._queue, key, room, taken, now)
        if bulk and self._bulk and len(taken) < room:
            before = len(self._bulk)
            self._bulk = self._pick(self._bulk, taken[0].key if taken else key, room, taken, now)
            if len(self._bulk) < before:
                self._cond.notify_all()  # bulk requests waiting for room
        return taken

    def _pick(self, queue: deque[Ticket], key: tuple | None, room: int, taken: list[Ticket], now: float) -> deque:
        """Move live tickets with `key` from `queue` into `taken` up to `room`; fail expired ones; return the rest."""
        kept: deque[Ticket] = deque()
        for ticket in queue:
            if ticket.cancelled:
                continue
            if now > ticket.deadline:
                ticket.error = DeadlineExceeded(f"waited past its deadline for model {self.name}")
                ticket.done.set()
                continue
            if key is None:
                key = ticket.key
            if len(taken) < room and ticket.key == key:
                taken.append(ticket)
            else:
                kept.append(ticket)
        return kept

    def _execute(self, batch: list[Ticket], waited: bool, left: int) -> None:
        """Run one batch, then free the model *before* waking its requests (a request that comes straight
        back must find the model idle, not still marked busy by a forward that has ended)."""
        try:
            self._forward_batch(batch, waited, left)
        finally:
            with self._cond:
                self._busy = False
                self._wake()
            for ticket in batch:
                ticket.done.set()

    def _forward_batch(self, batch: list[Ticket], waited: bool, left: int) -> None:
        """Run one forward; if it fails for several samples, rerun each alone so only the bad one fails."""
        started = time.perf_counter()
        for ticket in batch:
            ticket.started = started
        try:
            outputs = self._run([ticket.sample for ticket in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"forward returned {len(outputs)} outputs for {len(batch)} inputs")
        except Exception as error:  # noqa: BLE001 - a model error must reach the request, not kill the thread
            if len(batch) == 1:
                self._execute_alone(batch[0], left, failed=error)
                return
            if is_out_of_memory(error):
                metrics.record_oom(self.label, "split")
                release_memory()
            logger.warning(
                "model {} failed on a batch of {} ({}); running each sample alone", self.name, len(batch), error
            )
            for ticket in batch:
                self._execute_alone(ticket, left)
            return
        self._finish(batch, outputs, [None] * len(batch), started, waited, left)

    def _execute_alone(self, ticket: Ticket, left: int, failed: BaseException | None = None) -> None:
        """One sample alone; out of memory frees the device's caches and tries once more."""
        started = time.perf_counter()
        output, error = None, failed
        if error is None:
            output, error = self._run_one(ticket)
        if error is not None and is_out_of_memory(error):
            release_memory()
            started = time.perf_counter()
            output, error = self._run_one(ticket)
            if error is None:
                metrics.record_oom(self.label, "retried")
            elif is_out_of_memory(error):
                metrics.record_oom(self.label, "failed")
                error = DeviceOutOfMemory(f"model {self.name} ran out of device memory for a single image")
        if error is not None:
            logger.opt(exception=error).error("model {} failed on a sample", self.name)
        self._finish([ticket], [output], [error], started, False, left, isolated=True)

    def _run_one(self, ticket: Ticket) -> tuple[Any, BaseException | None]:
        try:
            return self._run([ticket.sample])[0], None
        except Exception as error:  # noqa: BLE001
            return None, error

    def _finish(
        self,
        batch: list[Ticket],
        outputs: Sequence[Any],
        errors: Sequence[BaseException | None],
        started: float,
        waited: bool,
        left: int,
        isolated: bool = False,
    ) -> None:
        forward_s = time.perf_counter() - started
        forward_ms = forward_s * 1000.0
        typical = self._typical_forward_s
        self._typical_forward_s = forward_s if typical is None else 0.8 * typical + 0.2 * forward_s
        self.history.append(BatchRecord(tuple(t.tag for t in batch), batch[0].key, waited, left, isolated))
        self.batches += 1
        self.samples += len(batch)
        metrics.record_batch(self.label, len(batch), forward_s)
        for ticket, output, error in zip(batch, outputs, errors):
            ticket.output, ticket.error = output, error
            ticket.forward_ms, ticket.batch_size = forward_ms, len(batch)


class _ArrivalScope:
    """`with batcher.arrival(n) as arrival:` admits the request and always withdraws what it did not submit."""

    def __init__(self, batcher: Batcher, expected: int, bulk: bool = False, until: float | None = None) -> None:
        self._batcher, self._expected, self._bulk, self._until = batcher, expected, bulk, until
        self._arrival: Arrival | None = None

    def __enter__(self) -> Arrival:
        self._arrival = self._batcher._admit(self._expected, self._bulk, self._until)
        return self._arrival

    def __exit__(self, *exc_info: Any) -> None:
        if self._arrival is not None:
            self._arrival.leave()
