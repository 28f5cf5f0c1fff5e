"""CPU cores shared by every inference thread of every worker, so forwards never oversubscribe the CPU.

A lone request takes every idle core (lowest latency) while no other worker has a request in flight;
under load (a batch of several images, requests waiting behind it, or another worker's requests, whose
forwards would start beside this one) a forward asks only for its worker's fair share, and it never
gets more than the cores other forwards leave free, nor fewer than one (highest throughput: one OpenMP
team per core instead of several teams fighting over the same cores; a 2-thread resnet18 forward costs
~15% more CPU per image, and three threads on two cores far more). Each worker owns one slot of a small
shared-memory array (created by the gunicorn master before forking, see gunicorn.conf.py): the threads
its forwards hold, plus IN_FLIGHT while it has requests in flight. It writes only its own slot, so no
lock is needed and a worker that dies cannot leave a lock held; the master clears a dead worker's slot.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
from collections.abc import Iterator, MutableSequence
from contextlib import contextmanager
from pathlib import Path

import torch


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container limited to
    2 CPUs on a 64-core host has 2, whatever os.cpu_count says), rounded up, at least one."""
    try:
        affinity = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        affinity = max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return max(1, min(affinity, math.ceil(quota))) if quota else affinity


#: cgroup v2's CPU limit of this process's group, and cgroup v1's quota and period.
CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def cgroup_cpu_quota(v2: Path = CGROUP_V2_MAX, v1: tuple[Path, Path] = CGROUP_V1) -> float | None:
    """CPUs the cgroup quota allows (e.g. 1.5), or None when there is no limit or no cgroup to read."""
    try:
        quota, period = v2.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = v1[0].read_text().strip(), v1[1].read_text().strip()
        except OSError:
            return None
    try:
        cpus = int(quota) / int(period)
    except ValueError:  # "max": no limit
        return None
    return cpus if cpus > 0 else None


#: Added to a worker's slot while it has requests in flight; the bits below it count the threads its forwards hold.
IN_FLIGHT = 1 << 16
THREADS = IN_FLIGHT - 1


def shared_slots(count: int) -> MutableSequence[int]:
    """One int per worker in shared memory; create before forking so every worker sees the same array."""
    return multiprocessing.Array("i", max(1, count), lock=False)


class CoreBudget:
    """Grants each forward a number of intra-op threads from the cores not used by other forwards."""

    def __init__(self, total: int | None = None, slots: MutableSequence[int] | None = None, slot: int = 0) -> None:
        self.total = total or available_cores()
        self._slots = slots if slots is not None else [0]
        self._slot = slot
        self._local = 0  # threads held by this process's forwards (several models run side by side)
        self._requests = 0  # this process's requests in flight (decoding, queued or in a forward)
        self._lock = threading.Lock()

    @property
    def fair_share(self) -> int:
        """Cores per worker when every worker is busy."""
        return max(1, self.total // max(1, len(self._slots)))

    def take(self, wanted: int | None = None) -> int:
        """Claim threads for one forward: all idle cores up to `wanted` (None: every idle core, or the fair share
        while another worker has requests in flight), never fewer than one."""
        with self._lock:
            others, busy = self._others()
            if wanted is None and busy:
                wanted = self.fair_share
            wanted = max(1, min(wanted or self.total, self.total))
            granted = max(1, min(wanted, self.total - others - self._local))
            self._local += granted
            self._publish()
            # Another worker may have claimed at the same moment: re-read and give back what overlaps.
            others, _ = self._others()
            if others + self._local > self.total and granted > 1:
                shrink = min(granted - 1, others + self._local - self.total)
                granted -= shrink
                self._local -= shrink
                self._publish()
        return granted

    def give(self, granted: int) -> None:
        """Return the threads of a finished forward."""
        with self._lock:
            self._local = max(0, self._local - granted)
            self._publish()

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """One request of this worker in flight for the length of the block. Measured on 2 cores (resnet18, 4
        clients): a lone request that took both cores while the other worker's forward started made three threads
        on two cores, 44 ms of CPU per request against 38 with one thread per forward."""
        with self._lock:
            self._requests += 1
            self._publish()
        try:
            yield
        finally:
            with self._lock:
                self._requests -= 1
                self._publish()

    def _others(self) -> tuple[int, bool]:
        """Under the lock: the threads other workers' forwards hold, and whether any has a request in flight."""
        held, busy = 0, False
        for slot, value in enumerate(self._slots):
            if slot != self._slot:
                held += value & THREADS
                busy = busy or value >= IN_FLIGHT
        return held, busy

    def _publish(self) -> None:
        """Under the lock: this worker's slot from its held threads and its requests in flight."""
        self._slots[self._slot] = self._local | (IN_FLIGHT if self._requests else 0)

    @contextmanager
    def threads(self, fixed: int = 0, wanted: int | None = None) -> Iterator[int]:
        """Run the body with torch's intra-op threads set to the granted share (or to `fixed` when set)."""
        granted = fixed or self.take(wanted)
        if torch.get_num_threads() != granted:
            torch.set_num_threads(granted)
        try:
            yield granted
        finally:
            if not fixed:
                self.give(granted)


_budget = CoreBudget()


def budget() -> CoreBudget:
    """This process's budget (a private one unless a gunicorn worker installed the shared one)."""
    return _budget


def install(slots: MutableSequence[int], slot: int, total: int | None = None) -> CoreBudget:
    """Share the cores with the other gunicorn workers through `slots` (called in post_fork)."""
    global _budget
    _budget = CoreBudget(total=total, slots=slots, slot=slot)
    return _budget


_single = threading.local()


def single_threaded() -> None:
    """Make torch ops in the calling (request) thread run on one core.

    Request threads already run in parallel; letting each also start an OpenMP team would multiply
    threads past the core count, and extra OpenMP thread pools slow every forward in the process.
    """
    if not getattr(_single, "done", False):
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        _single.done = True
