"""Reading model files safely: paths confined to AI_SERVICE_HOME, sha256 checks, tensors only (no pickled code)."""
from __future__ import annotations

import difflib
import hashlib
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ai_service.models.base import move_module

STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model", "weights")
SAFETENSORS_SUFFIXES = (".safetensors",)


class WeightsError(ValueError):
    """A model file that is missing, outside AI_SERVICE_HOME, tampered with, or not plain tensors."""


def resolve_model_path(path: str | Path, home: Path, base: Path) -> Path:
    """`path` relative to `base` (normally AI_SERVICE_HOME/models), refused if it resolves outside `home`."""
    raw = Path(str(path)).expanduser()
    resolved = (raw if raw.is_absolute() else base / raw).resolve()
    root = home.resolve()
    if not resolved.is_relative_to(root):
        raise WeightsError(f"path {str(path)!r} resolves to {resolved}, outside AI_SERVICE_HOME ({root}); refused")
    return resolved


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks so big checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> None:
    """Refuse a weights file whose content is not the one the models file pinned."""
    if not expected:
        return
    actual = sha256_of(path)
    if actual != expected.strip().lower():
        raise WeightsError(f"sha256 mismatch for {path.name}: expected {expected.strip().lower()}, got {actual}; "
                           "the file changed since it was pinned, refusing to load it")


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise WeightsError(f"model file {path} does not exist")
    return path


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or a torch.save file, loaded with weights_only=True (never arbitrary pickle)."""
    require_file(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise WeightsError(f"{path.name} is not a valid safetensors file: {exc}") from exc
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path.name} contains Python objects other than tensors and plain containers; refusing "
                           "to unpickle it (save `model.state_dict()` with torch.save, or use safetensors)") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise WeightsError(f"{path.name} is not a readable torch.save file: {exc}") from exc
    return _as_state_dict(payload, path.name)


def _as_state_dict(payload: object, filename: str) -> dict[str, torch.Tensor]:
    """Accept a bare state_dict or the usual checkpoint wrappers, and strip DataParallel's 'module.' prefix."""
    if isinstance(payload, dict) and not _is_tensor_dict(payload):
        for key in STATE_DICT_WRAPPERS:
            if _is_tensor_dict(payload.get(key)):
                payload = payload[key]
                break
    if not _is_tensor_dict(payload):
        raise WeightsError(f"{filename} holds no state_dict (a mapping of parameter names to tensors)")
    state = dict(payload)  # type: ignore[arg-type]
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _is_tensor_dict(value: object) -> bool:
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def classification_architectures() -> list[str]:
    """torchvision's classification builders (resnet18, mobilenet_v3_small, efficientnet_b0, vit_b_16, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_architecture(architecture: str, num_classes: int, state: dict[str, torch.Tensor]) -> nn.Module:
    """A torchvision classifier with `num_classes` outputs holding `state`, without random-initializing first."""
    import torchvision

    known = classification_architectures()
    if architecture not in known:
        close = difflib.get_close_matches(architecture, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise WeightsError(f"unknown torchvision classification architecture {architecture!r}{hint}")
    with torch.device("meta"):
        network = torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)
    try:
        network.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsError(f"the weights do not fit {architecture} with num_classes={num_classes}: "
                           f"{_first_lines(str(exc))}") from exc
    if any(t.is_meta for t in (*network.parameters(), *network.buffers())):
        network = torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)
        network.load_state_dict(state, strict=True)
    return network


def load_torchscript(path: Path, device: torch.device) -> nn.Module:
    """A `torch.jit.save` archive, mapped straight onto the device."""
    require_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still supported
            return torch.jit.load(str(path), map_location=device)
    except RuntimeError as exc:
        raise WeightsError(f"{path.name} is not a TorchScript archive (save it with torch.jit.save): "
                           f"{_first_lines(str(exc))}") from exc


def load_exported(path: Path, device: torch.device) -> tuple[nn.Module, int | None]:
    """A `torch.export.save` program as a callable module, and its batch size if the export fixed one."""
    require_file(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch.export raises several unrelated types for a wrong file
        raise WeightsError(f"{path.name} is not a torch.export program (save it with torch.export.save): "
                           f"{_first_lines(str(exc))}") from exc
    fixed_batch = _static_batch_size(program)
    module = move_module(program.module(), device)
    del program
    return module, fixed_batch


def _static_batch_size(program: "torch.export.ExportedProgram") -> int | None:
    """The first input's batch dimension when it was exported as a constant (no dynamic_shapes)."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta.get("val")
            if isinstance(value, torch.Tensor) and value.dim() > 0 and isinstance(value.shape[0], int):
                return int(value.shape[0])
            return None
    return None


def _first_lines(text: str, lines: int = 4) -> str:
    return " ".join(text.strip().splitlines()[:lines])[:600]
