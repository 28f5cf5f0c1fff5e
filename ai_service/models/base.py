"""The model contract: load on a device, preprocess images to a batch, forward, postprocess per image.

Three hooks are required (`load`, `preprocess`, `postprocess`) plus a class-level `info`; everything else
has a default. The registry checks a model when it is registered and answers misuse with the code to write.
"""
from __future__ import annotations

import inspect
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from PIL import Image

from ai_service.model_refs import MAX_PART_LENGTH, is_valid_part
from ai_service.models import pytree

TASKS = ("classification", "image-to-image", "detection", "segmentation")
EXAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
WARMUP_SIDE = 64
DEFAULT_TOP_K = 3

ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class ModelInfo:
    """Metadata the API, the web page and the batcher read without loading the network."""

    name: str
    version: str = "1"
    task: str = "classification"
    input_size: tuple[int, int] | None = (224, 224)
    input_mode: str = "RGB"
    labels: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    description: str = ""
    #: Example inputs the upload page offers (absolute paths to image files, e.g. Path(__file__).parent / "cat.png");
    #: the API lists them by file name, which must be unique per model, and serves each file.
    examples: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "examples", tuple(Path(path) for path in self.examples))
        names = [path.name for path in self.examples]
        if len(set(names)) != len(names) or not all(EXAMPLE_NAME.match(name) for name in names):
            raise ValueError(f"model {self.name}: examples need distinct file names of letters, digits, '.', '_' "
                             f"or '-', got {names}")
        if not all(path.is_absolute() for path in self.examples):
            raise ValueError(f"model {self.name}: example paths must be absolute, e.g. Path(__file__).parent / 'x.png'")
        if self.task not in TASKS:
            raise ValueError(f"model {self.name}: task must be one of {TASKS}, got {self.task!r}")
        for what, value in (("name", self.name), ("version", self.version)):
            if not is_valid_part(str(value)):
                raise ValueError(f"model {what} {value!r} must be 1-{MAX_PART_LENGTH} letters, digits, '.', '_', '+' "
                                 "or '-', starting with a letter or digit (no '@', '/' or spaces) so that it can be "
                                 "addressed as name@version")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            raise ValueError(f"model {self.name}: input_size must be [width, height] of positive ints or None")

    @property
    def key(self) -> str:
        """The unique address of this model: name@version."""
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size) if self.input_size is not None else None
        data["labels"] = list(self.labels)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        data["examples"] = [path.name for path in self.examples]  # file names only: paths stay on the server
        return data

    def example(self, name: str) -> Path | None:
        """The example file listed under `name`, or None."""
        return next((path for path in self.examples if path.name == name), None)


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """What a request may tune; None means the model's own default (its `fit`, `resample`, threshold)."""

    top_k: int = DEFAULT_TOP_K
    fit: str | None = None
    resample: str | None = None
    background: str | None = None
    score_threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Batch(Generic[ItemT]):
    """What preprocess returns: the (N, ...) batch tensor and, per image, what postprocess will need to know.

    A model without per-image state returns `Batch(tensor)`; its postprocess receives None for each image.
    A model with state returns `Batch(tensor, items)`, one item per image (e.g. the fit geometry), and the
    pipeline hands postprocess exactly the items of the images in `outputs`, however batches were split.
    """

    tensor: torch.Tensor
    items: Sequence[ItemT] = ()

    def states(self) -> Sequence[ItemT | None]:
        """One state per image: the items given, or None for each image of a stateless model."""
        if not self.items:
            return [None] * self.tensor.shape[0]
        if len(self.items) != self.tensor.shape[0]:
            raise RuntimeError(f"preprocess returned {len(self.items)} items for {self.tensor.shape[0]} samples")
        return self.items


class ModelContractError(TypeError):
    """A model that cannot be served as written; the message shows the code to add."""


class ImageModel(ABC, Generic[ItemT]):
    """Subclass this to serve a network: set `info`, implement load/preprocess/postprocess; never touch Flask.

    `ItemT` is the per-image state preprocess hands to postprocess (see Batch); stateless models ignore it.
    Create every tensor and module in `load` and keep them as attributes (directly or in a list/dict):
    `to`, `unload`, `parameter_count` and `weight_bytes` find them there, so offloading and unloading
    reach cached buffers and compiled artefacts too, not only `network`.
    """

    info: ModelInfo
    #: Batching limits for this model (None: the engine's defaults, see AI_SERVICE_MAX_BATCH_SIZE / _DELAY_MS).
    max_batch_size: int | None = None
    max_batch_delay_ms: float | None = None
    #: fp32, bf16, fp16 or auto (None: AI_SERVICE_PRECISION). Reduced precision is served only if the model passes
    #: the accuracy check at load (ai_service/models/precision.py), against `precision_tolerance`: the lowest top-1
    #: agreement (classification, default 0.99) or the largest absolute output error (other tasks, default 0.05).
    precision: str | None = None
    precision_tolerance: float | None = None
    #: Folder of images the check runs (None: the examples, else synthetic images).
    calibration_dir: Path | None = None
    #: What the check decided (set at every load): the precision forwards run in, and why.
    precision_in_use: str | None = None
    precision_check: Any = None

    def __init__(self) -> None:
        self.device: torch.device | None = None
        self.network: torch.nn.Module | None = None

    @abstractmethod
    def load(self, device: torch.device) -> None:
        """Build the network, load weights, move to `device`, switch to eval mode; set self.network and self.device."""

    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[ItemT]:
        """Turn decoded images into one batch (N, C, H, W) on the model's device, plus per-image state."""

    @abstractmethod
    def postprocess(self, outputs: Any, items: Sequence[ItemT], options: ModelOptions) -> list[dict[str, Any]]:
        """Turn the batch output into one JSON-ready result per image; `items` are those images' states."""

    def decode_size(self) -> tuple[int, int] | None:
        """The smallest (w, h) worth decoding to; lets JPEG decoding skip pixels the model never sees."""
        return self.info.input_size

    def forward(self, batch: torch.Tensor) -> Any:
        """Run the network without autograd."""
        assert self.network is not None, f"model {self.info.name} is not loaded"
        with torch.inference_mode():
            return self.network(batch)

    def warmup(self) -> None:
        """Run one dummy batch so lazy initialization (cuDNN autotune, allocator growth) happens at load."""
        options = ModelOptions(top_k=1)
        batch = self.preprocess([self.warmup_image()], options)
        self.postprocess(self.forward(batch.tensor), batch.states(), options)

    def warmup_image(self) -> Image.Image:
        """A blank image of the model's input size and mode: what warm-ups feed it before any request."""
        width, height = self.info.input_size or (WARMUP_SIDE, WARMUP_SIDE)
        mode = self.info.input_mode if self.info.input_mode in ("L", "LA", "RGB", "RGBA") else "RGB"
        return Image.new(mode, (width, height), 0)

    def unload(self) -> None:
        """Drop every reference to weights (modules, tensors, caches of them) so the memory can be returned."""
        for name, _ in list(self._weight_attributes()):
            setattr(self, name, None)
        self.network = None
        self.device = None

    def to(self, device: torch.device) -> None:
        """Move every module and tensor attribute to `device` (offload to CPU, or back for a fast reload)."""
        for name, value in list(self._weight_attributes()):
            setattr(self, name, pytree.tree_map(lambda leaf: _move(leaf, device), value))
        self.device = device

    def parameter_count(self) -> int:
        """Number of learnable parameters currently held."""
        seen: set[int] = set()
        total = 0
        for module in self._modules_held():
            for parameter in module.parameters():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    total += parameter.numel()
        return total

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of every distinct tensor held, per device ('cpu', 'cuda:0', ...)."""
        seen: set[tuple[str, int]] = set()
        totals: dict[str, int] = {}
        for tensor in self._tensors_held():
            storage = tensor.untyped_storage()
            key = (str(tensor.device), storage.data_ptr() or id(storage))
            if key in seen:
                continue
            seen.add(key)
            totals[str(tensor.device)] = totals.get(str(tensor.device), 0) + storage.nbytes()
        return totals

    def estimated_bytes(self) -> int | None:
        """Bytes the weights will take once loaded, if known before loading (lets the registry evict first)."""
        return None

    @property
    def loaded(self) -> bool:
        return self.network is not None

    def _weight_attributes(self) -> Iterator[tuple[str, Any]]:
        """Attributes that hold a module, a tensor, or a list/tuple/dict of them."""
        for name, value in list(vars(self).items()):
            if name != "device" and _holds_weights(value):
                yield name, value

    def _modules_held(self) -> Iterator[torch.nn.Module]:
        for _, value in self._weight_attributes():
            yield from (item for item in pytree.leaves(value) if isinstance(item, torch.nn.Module))

    def _tensors_held(self) -> Iterator[torch.Tensor]:
        for _, value in self._weight_attributes():
            for item in pytree.leaves(value):
                if isinstance(item, torch.nn.Module):
                    yield from item.parameters()
                    yield from item.buffers()
                elif isinstance(item, torch.Tensor):
                    yield item


def check_contract(model: ImageModel | type) -> None:
    """Raise ModelContractError listing each missing piece with the code to write (the registry calls this)."""
    cls = model if isinstance(model, type) else type(model)
    if not issubclass(cls, ImageModel):
        raise ModelContractError(f"{cls.__name__} is not a model; subclass ImageModel:\n"
                                 "    from ai_service.models.base import ImageModel\n"
                                 f"    class {cls.__name__}(ImageModel): ...")
    problems = [_missing_hook(cls, name) for name in _abstract_in_order(cls)]
    if not isinstance(getattr(model, "info", None), ModelInfo):
        slug = re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()
        problems.append(f"{cls.__name__} has no `info`; add a class attribute:\n"
                        f"    info = ModelInfo(name=\"{slug}\", task=\"classification\", input_size=(224, 224))")
    if problems:
        raise ModelContractError("\n".join(problems))


def _abstract_in_order(cls: type) -> list[str]:
    """The class's abstract methods in the order the contract declares them (load, preprocess, ...)."""
    missing = getattr(cls, "__abstractmethods__", frozenset())
    ordered = [name for klass in reversed(cls.__mro__) for name in vars(klass) if name in missing]
    return list(dict.fromkeys(ordered))


def _missing_hook(cls: type, name: str) -> str:
    """'X does not implement y; add:' plus the hook's real signature and what it is for."""
    function = getattr(cls, name)
    signature = str(inspect.signature(function)).replace("'", "")
    purpose = (inspect.getdoc(function) or "").splitlines()[0:1]
    body = f'        """{purpose[0]}"""\n        ...' if purpose else "        ..."
    return f"{cls.__name__} does not implement {name}; add:\n    def {name}{signature}:\n{body}"


def move_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module.to(device)` plus the plain tensor attributes `.to` skips (torch.export keeps constants so)."""
    module.to(device)
    for submodule in module.modules():
        for name, value in list(vars(submodule).items()):
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                setattr(submodule, name, value.to(device))
    return module


def _holds_weights(value: Any) -> bool:
    return any(isinstance(item, (torch.nn.Module, torch.Tensor)) for item in pytree.leaves(value))


def _move(leaf: Any, device: torch.device) -> Any:
    """A module moves in place (constants included), a tensor is copied; anything else stays."""
    if isinstance(leaf, torch.nn.Module):
        return move_module(leaf, device)
    if isinstance(leaf, torch.Tensor):
        return leaf.to(device)
    return leaf


#: A classifier's answer is flagged as unlike its training data when the best label scores below this
#: probability...
MIN_CONFIDENCE = 0.6
#: ...or when the softmax's entropy, divided by log(number of classes) (0 = certain, 1 = uniform), exceeds this.
#: Calibrated on `digits` (README, "When an input is unlike the training data"): 0.3% of 1,800 held-out digits
#: (five renderings each) are flagged; scikit-image's cat photo (33%, entropy 0.74) is.
MAX_ENTROPY = 0.4


def normalized_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Per row: the entropy of a probability vector over log(classes), in [0, 1] (0 for a single class)."""
    classes = probabilities.shape[1]
    if classes < 2:
        return torch.zeros(probabilities.shape[0])
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(dim=1)
    return (entropy / math.log(classes)).clamp(0, 1)


def unfamiliar_input_warnings(top_score: float, entropy: float, model: str = "the model",
                              min_confidence: float = MIN_CONFIDENCE, max_entropy: float = MAX_ENTROPY
                              ) -> list[dict[str, Any]]:
    """A `warnings` entry when a classifier is unsure: the input is likely unlike what it was trained on."""
    if top_score >= min_confidence and entropy <= max_entropy:
        return []
    return [{
        "code": "unfamiliar_input",
        "message": f"This image looks unlike what {model} was trained on: its best guess scores only "
                   f"{top_score:.0%} (uncertainty {entropy:.2f} of 1), so the prediction is probably meaningless.",
        "details": {"top_score": round(top_score, 6), "entropy": round(entropy, 6),
                    "min_confidence": min_confidence, "max_entropy": max_entropy},
    }]


#: Rows of at most this many classes are scored in Python from one `tolist()`. Inside a served request each torch
#: op costs several µs of dispatch, and scoring in torch takes about ten (softmax, top-k, seven for the entropy):
#: py-spy put digits' postprocess at ~0.1 ms of a 1.8 ms request in torch, ~0.02 ms in Python. Past a few dozen
#: classes torch is the faster of the two.
PYTHON_MAX_CLASSES = 64


def top_k_predictions(logits: torch.Tensor, labels: Sequence[str], top_k: int, model: str = "the model"
                      ) -> list[dict[str, Any]]:
    """Softmax each row and keep the k best labels with their probabilities; flag unsure rows (`warnings`)."""
    logits = logits.float()
    k = max(1, min(int(top_k), logits.shape[1]))
    results = []
    for best, entropy in scored_rows(logits, k):
        predictions = [{"label": labels[i] if i < len(labels) else str(i), "index": i, "score": round(s, 6)}
                       for s, i in best]
        result: dict[str, Any] = {"predictions": predictions}
        if warnings := unfamiliar_input_warnings(best[0][0], entropy, model):
            result["warnings"] = warnings
        results.append(result)
    return results


def scored_rows(logits: torch.Tensor, k: int) -> list[tuple[list[tuple[float, int]], float]]:
    """Per row: its k best (probability, class index) pairs, best first, and its normalized entropy."""
    if logits.shape[1] <= PYTHON_MAX_CLASSES:
        rows = logits.tolist()
        if all(math.isfinite(sum(row)) for row in rows):  # inf/NaN logits keep torch's answer
            return [_scored_row(row, k) for row in rows]
    probabilities = torch.softmax(logits, dim=1)
    scores, indices = probabilities.topk(k, dim=1)
    entropies = normalized_entropy(probabilities).tolist()
    return [(list(zip(s, i)), e) for s, i, e in zip(scores.tolist(), indices.tolist(), entropies)]


def _scored_row(row: list[float], k: int) -> tuple[list[tuple[float, int]], float]:
    """`scored_rows` for one row of finite logits, in Python (ties: the lower class index first)."""
    top = max(row)
    exps = [math.exp(value - top) for value in row]
    total = sum(exps)
    probabilities = [value / total for value in exps]
    best = sorted(range(len(row)), key=probabilities.__getitem__, reverse=True)[:k]
    entropy = 0.0
    if len(row) > 1:
        entropy = -sum(p * math.log(max(p, 1e-12)) for p in probabilities) / math.log(len(row))
    return [(probabilities[i], i) for i in best], min(max(entropy, 0.0), 1.0)
