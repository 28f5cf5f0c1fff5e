"""gunicorn worker placement: slots in the shared core budget and one GPU per worker."""

from __future__ import annotations

import os

import pytest

from ai_service.server import cores, placement


def test_free_slot_is_the_lowest_unused_one():
    assert placement.free_slot([], 3) == 0
    assert placement.free_slot([0, 2], 3) == 1
    assert placement.free_slot([1, None], 2) == 0
    assert placement.free_slot([0, 1], 2) is None  # more workers than slots (gunicorn TTIN)


def test_each_worker_gets_its_own_gpu_and_a_replacement_inherits_it():
    assert [placement.gpu_for_slot("0,1,2,3", slot) for slot in range(4)] == ["0", "1", "2", "3"]
    assert placement.gpu_for_slot("2, 5", 3) == "5"  # two workers per GPU: round robin
    assert placement.gpu_for_slot("0", 0) is None  # one GPU: AI_SERVICE_GPUS already pins it
    assert placement.gpu_for_slot("", 1) is None


@pytest.fixture
def restore_environment(monkeypatch):
    monkeypatch.setenv("AI_SERVICE_GPUS", "0,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    previous = cores.budget()
    yield
    cores._budget = previous


def test_entering_a_worker_pins_the_gpu_and_joins_the_shared_budget(restore_environment):
    slots = cores.shared_slots(2)
    slots[1] = 7  # left over from a worker that died
    assert placement.enter_worker(slots, 1, "0,1") == "1"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1" and os.environ["AI_SERVICE_GPUS"] == "1"
    assert slots[1] == 0
    budget = cores.budget()
    granted = budget.take()
    assert slots[1] == granted == budget.total
    budget.give(granted)
    assert slots[1] == 0


def test_default_workers_follow_the_cores_and_cover_the_gpus():
    assert placement.default_workers("0,1,2", "auto") == max(3, cores.available_cores())
    assert placement.default_workers("0,1,2", "cpu") == cores.available_cores()
    assert placement.default_workers("", "auto") == cores.available_cores()
