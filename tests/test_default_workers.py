"""`make run` starts the best configuration for the machine: one worker per core (affinity and cgroup quota) or per
GPU, each starting with its share of the cores as torch threads."""

from __future__ import annotations

import os

import requests

from ai_service.devices import configure_torch_threads
from ai_service.server import cores, placement
from ai_service.server.gunicorn_config import gunicorn_config
from ai_service.settings import load_settings
from tests.live_gunicorn import running_gunicorn


def test_the_default_is_one_worker_per_core_here(tmp_path):
    settings = load_settings({"home": str(tmp_path), "device": "cpu", "metrics": False})
    assert settings.server.workers == 0
    assert gunicorn_config(settings)["workers"] == cores.available_cores()


def test_cgroup_quota_caps_the_cores(tmp_path):
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")
    assert cores.cgroup_cpu_quota(v2, (tmp_path / "no", tmp_path / "no")) == 1.5
    v2.write_text("max 100000\n")
    assert cores.cgroup_cpu_quota(v2, (tmp_path / "no", tmp_path / "no")) is None
    quota, period = tmp_path / "quota", tmp_path / "period"
    quota.write_text("-1\n")
    period.write_text("100000\n")
    assert cores.cgroup_cpu_quota(tmp_path / "missing", (quota, period)) is None
    quota.write_text("50000\n")
    assert cores.cgroup_cpu_quota(tmp_path / "missing", (quota, period)) == 0.5


def test_available_cores_respects_affinity_and_quota():
    affinity = len(os.sched_getaffinity(0))
    quota = cores.cgroup_cpu_quota()
    expected = min(affinity, -(-quota // 1)) if quota else affinity
    assert cores.available_cores() == max(1, int(expected))


def test_gpu_boxes_get_one_worker_per_core_and_at_least_one_per_gpu():
    """A worker's Python runs on about one core whatever the device (bench/results/serving-gpu.md)."""
    n = cores.available_cores()
    assert placement.default_workers("0,1,2", "auto", gpu_count=8) == max(n, 3)
    assert placement.default_workers("", "auto", gpu_count=4) == max(n, 4)
    assert placement.default_workers("", "cuda", gpu_count=2) == max(n, 2)
    assert placement.default_workers("", "cuda:1", gpu_count=4) == n  # one named device, every core feeding it
    assert placement.default_workers("", "cpu", gpu_count=4) == n
    assert placement.default_workers("", "auto", gpu_count=0) == n
    many = ",".join(str(index) for index in range(n + 2))
    assert placement.default_workers(many, "auto") == n + 2  # more GPUs than cores: still one worker each
    # Unlisted GPUs: each worker takes one by index, visibility untouched.
    assert [placement.device_for_slot("", "auto", slot, 4) for slot in range(5)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:3",
        "cuda:0",
    ]
    assert placement.device_for_slot("0,1", "auto", 0, 2) is None  # AI_SERVICE_GPUS pins through visibility
    assert placement.device_for_slot("", "auto", 0, 1) is None
    assert placement.device_for_slot("", "cpu", 0, 4) is None


def test_torch_threads_are_the_workers_share_of_the_cores():
    total = cores.available_cores()
    assert configure_torch_threads(0, workers=total) == 1
    assert configure_torch_threads(0, workers=1) == total
    assert configure_torch_threads(3, workers=total) == 3  # a fixed setting wins


def test_make_run_defaults_start_one_worker_per_core(tmp_path):
    """The packaged configuration with AI_SERVICE_WORKERS=0 (the default) really forks one worker per core."""
    with running_gunicorn(tmp_path, workers=0, threads=2) as server:
        expected = cores.available_cores()
        pids = server.wait_for_workers(expected)
        assert len(pids) == expected
        assert requests.get(server.base + "/api/v1/health", timeout=10).status_code == 200
        assert "torch_threads=" in server.output()
