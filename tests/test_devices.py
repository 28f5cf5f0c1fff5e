import pytest
import torch
from loguru import logger

from ai_service.devices import (
    DeviceError,
    apply_gpu_visibility,
    configure_torch_threads,
    describe_device,
    select_device,
)


@pytest.fixture
def warnings():
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    yield messages
    logger.remove(handler)


def test_auto_without_cuda_is_cpu_quietly(warnings):
    assert select_device("auto", cuda_available=False) == torch.device("cpu")
    assert warnings == []


def test_cuda_requested_without_cuda_falls_back_with_warning(warnings):
    assert select_device("cuda", cuda_available=False) == torch.device("cpu")
    assert any("falling back to CPU" in m for m in warnings)


def test_require_cuda_fails_fast():
    with pytest.raises(DeviceError, match="REQUIRE_CUDA"):
        select_device("auto", require_cuda=True, cuda_available=False)
    with pytest.raises(DeviceError):
        select_device("cpu", require_cuda=True, cuda_available=True, cuda_count=1)


def test_cuda_index_is_honoured_when_available():
    assert select_device("cuda:1", cuda_available=True, cuda_count=2) == torch.device("cuda", 1)
    assert select_device("auto", cuda_available=True, cuda_count=1) == torch.device("cuda", 0)


def test_cuda_index_out_of_range(warnings):
    assert select_device("cuda:3", cuda_available=True, cuda_count=1) == torch.device("cuda", 0)
    assert any("only 1 CUDA device" in m for m in warnings)
    with pytest.raises(DeviceError):
        select_device("cuda:3", require_cuda=True, cuda_available=True, cuda_count=1)


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_names_are_rejected(value):
    with pytest.raises(DeviceError):
        select_device(value, cuda_available=False)


def test_gpus_setting_sets_cuda_visible_devices():
    env: dict[str, str] = {}
    apply_gpu_visibility("0, 2", env)
    assert env == {"CUDA_VISIBLE_DEVICES": "0,2"}
    apply_gpu_visibility("", env)
    assert env == {"CUDA_VISIBLE_DEVICES": "0,2"}
    with pytest.raises(DeviceError):
        apply_gpu_visibility("first", env)


def test_threads_share_cores_between_workers():
    before = torch.get_num_threads()
    try:
        assert configure_torch_threads(3) == 3 and torch.get_num_threads() == 3
        assert configure_torch_threads(0, workers=1000) == 1
    finally:
        torch.set_num_threads(before)


def test_health_reports_the_device(client):
    body = client.get("/api/v1/health").get_json()
    assert body["status"] == "ok" and body["device"]["device"] == "cpu"


def test_app_falls_back_to_cpu_when_cuda_requested(home, warnings, monkeypatch):
    from ai_service import create_app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    app = create_app({"home": str(home), "device": "cuda"})
    assert str(app.extensions["ai_service"].registry.device) == "cpu"
    assert describe_device(app.extensions["ai_service"].registry.device)["type"] == "cpu"
    with pytest.raises(DeviceError):
        create_app({"home": str(home), "device": "cuda", "require_cuda": True})
