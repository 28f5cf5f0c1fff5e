"""Model files: TorchScript, torch.export, torchvision state_dicts (.pt and safetensors), and what is refused."""

import os
import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from ai_service.models.loaders import (
    WeightsError,
    build_architecture,
    load_exported,
    load_state_dict,
    load_torchscript,
    resolve_model_path,
    sha256_of,
    verify_sha256,
)

CPU = torch.device("cpu")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:Detected pickle protocol")


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval()


def test_torchscript_round_trip(tmp_path, tiny):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(tiny), str(path))
    loaded = load_torchscript(path, CPU)
    x = torch.randn(3, 3, 8, 8)
    assert torch.allclose(loaded(x), tiny(x), atol=1e-6)


def test_export_round_trip_with_dynamic_and_fixed_batch(tmp_path, tiny):
    x = torch.randn(2, 3, 8, 8)
    dynamic = tmp_path / "dynamic.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(tiny, (x,), dynamic_shapes=({0: batch},)), str(dynamic))
    module, fixed = load_exported(dynamic, CPU)
    assert fixed is None
    y = torch.randn(5, 3, 8, 8)
    assert torch.allclose(module(y), tiny(y), atol=1e-5)
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(tiny, (x,)), str(static))
    assert load_exported(static, CPU)[1] == 2


@pytest.mark.parametrize("architecture", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_torchvision_state_dicts(tmp_path, architecture, suffix):
    torch.manual_seed(0)
    original = torchvision.models.get_model(architecture, weights=None, num_classes=3).eval()
    state = {k: v.contiguous() for k, v in original.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    rebuilt = build_architecture(architecture, 3, load_state_dict(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(rebuilt(x), original(x), atol=1e-5)
    assert not any(t.is_meta for t in rebuilt.state_dict().values())


def test_checkpoint_wrappers_and_data_parallel_prefix_are_understood(tmp_path, tiny):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in tiny.state_dict().items()}}, path)
    assert set(load_state_dict(path)) == set(tiny.state_dict())


class Exploit:
    """What a malicious checkpoint carries: an object whose unpickling runs a command."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_objects_are_refused_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": Exploit()}, path)
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load_state_dict(path)
    raw = tmp_path / "raw.pkl.pt"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(WeightsError):
        load_state_dict(raw)
    assert not (tmp_path / "pwned").exists()


def test_files_that_are_not_weights_are_refused(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors header")
    with pytest.raises(WeightsError, match="safetensors"):
        load_state_dict(garbage)
    not_script = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, not_script)
    with pytest.raises(WeightsError, match="TorchScript"):
        load_torchscript(not_script, CPU)
    with pytest.raises(WeightsError, match="torch.export"):
        load_exported(not_script, CPU)
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="no state_dict"):
        load_state_dict(tmp_path / "list.pt")


def test_architecture_errors_are_explained(tmp_path):
    with pytest.raises(WeightsError, match="did you mean resnet18"):
        build_architecture("resnet-18", 3, {})
    state = torchvision.models.get_model("resnet18", weights=None, num_classes=5).state_dict()
    with pytest.raises(WeightsError, match="num_classes=3"):
        build_architecture("resnet18", 3, state)


def test_paths_must_stay_inside_home(tmp_path):
    home = tmp_path / "home"
    models = home / "models"
    models.mkdir(parents=True)
    assert resolve_model_path("a/b.pt", home, models) == (models / "a" / "b.pt").resolve()
    assert resolve_model_path("../labels.txt", home, models) == (home / "labels.txt").resolve()
    assert resolve_model_path(str(models / "x.pt"), home, models) == (models / "x.pt").resolve()
    for escaping in ("../../etc/passwd", "/etc/passwd", "~/weights.pt"):
        with pytest.raises(WeightsError, match="outside AI_SERVICE_HOME"):
            resolve_model_path(escaping, home, models)
    (models / "link.pt").symlink_to(tmp_path / "outside.pt")
    with pytest.raises(WeightsError, match="outside"):
        resolve_model_path("link.pt", home, models)


def test_sha256_pins_the_file(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    digest = sha256_of(path)
    verify_sha256(path, digest.upper())
    verify_sha256(path, None)
    path.write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        verify_sha256(path, digest)
