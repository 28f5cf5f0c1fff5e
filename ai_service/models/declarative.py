"""Models described in AI_SERVICE_HOME/models.yaml (or .toml): TorchScript, torch.export or torchvision state_dict."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import torch
import yaml
from loguru import logger
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ai_service.imaging.alpha import flatten_alpha, has_alpha
from ai_service.imaging.convert import pils_to_batch
from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.geometry import Geometry
from ai_service.imaging.io import sniff_format
from ai_service.imaging.resize import FILTERS, FIT_MODES, fit_image
from ai_service.models import tasks
from ai_service.models.base import TASKS, Batch, ImageModel, ModelInfo, ModelOptions, top_k_predictions
from ai_service.models.loaders import (
    WeightsError,
    build_architecture,
    load_exported,
    load_state_dict,
    load_torchscript,
    require_file,
    resolve_model_path,
    verify_sha256,
)
from ai_service.models.registry import ModelRegistry

MODELS_FILE_NAMES = ("models.yaml", "models.yml", "models.toml")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)
FILTER_ALIASES = {"box": "area"}
#: Formats an example input may have: those every browser shows, so the upload page can preview it.
EXAMPLE_FORMATS = ("png", "jpeg", "webp", "gif", "bmp")
MAX_EXAMPLES = 12


class ModelSpec(BaseModel):
    """One entry of the models file; unknown keys are errors so that a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["torchscript", "export", "state_dict"]
    weights: str
    architecture: Optional[str] = None
    num_classes: Optional[int] = Field(None, ge=1)
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    version: str = "1"
    task: str = "classification"
    input_size: tuple[int, int] = (224, 224)
    mode: Literal["RGB", "L"] = "RGB"
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    labels: Optional[tuple[str, ...]] = None
    labels_file: Optional[str] = None
    description: str = ""
    examples: tuple[str, ...] = Field((), max_length=MAX_EXAMPLES)
    fit: Literal["stretch", "letterbox", "crop"] = "stretch"
    resample: str = "bilinear"
    score_threshold: float = Field(0.5, ge=0, le=1)
    max_batch_size: Optional[int] = Field(None, ge=1)
    max_batch_delay_ms: Optional[float] = Field(None, ge=0)
    #: fp32, bf16, fp16 or auto (default: AI_SERVICE_PRECISION), kept only if the load-time check passes.
    precision: Optional[Literal["fp32", "bf16", "fp16", "auto"]] = None
    #: The check's bound: lowest top-1 agreement (classification, 0-1) or largest absolute output error.
    precision_tolerance: Optional[float] = Field(None, ge=0)
    #: A folder of images (relative to the models folder, inside the home) the check runs instead of the examples.
    calibration: Optional[str] = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> str:
        return str(value)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(f"must be one of {', '.join(TASKS)}")
        return value

    @field_validator("resample")
    @classmethod
    def _known_filter(cls, value: str) -> str:
        value = FILTER_ALIASES.get(value, value)
        if value not in FILTERS:
            raise ValueError(f"must be one of {', '.join(FILTERS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        if self.kind == "state_dict" and (not self.architecture or not self.num_classes):
            raise ValueError("kind state_dict needs `architecture` (a torchvision model name) and `num_classes`")
        if self.kind != "state_dict" and (self.architecture or self.num_classes):
            raise ValueError("`architecture` and `num_classes` only apply to kind state_dict")
        if self.labels is not None and self.labels_file is not None:
            raise ValueError("give `labels` or `labels_file`, not both")
        channels = 1 if self.mode == "L" else 3
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != channels:
                raise ValueError(f"`{key}` needs {channels} value(s) for mode {self.mode}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError("`std` values must be positive")
        if min(self.input_size) < 1:
            raise ValueError("`input_size` must be [width, height] of positive integers")
        return self

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        default_mean, default_std = (GRAY_MEAN, GRAY_STD) if self.mode == "L" else (IMAGENET_MEAN, IMAGENET_STD)
        return self.mean or default_mean, self.std or default_std


@dataclass(frozen=True, slots=True)
class Fitted:
    """Per image: how it was fitted to the model input, and the original when an output must get its alpha back."""

    geometry: Geometry
    original: Image.Image | None = None


class DeclarativeModel(ImageModel[Fitted]):
    """A model file plus the metadata from its models-file entry: no Python written by the user."""

    def __init__(self, spec: ModelSpec, home: Path, models_dir: Path) -> None:
        super().__init__()
        self.spec = spec
        self.weights_path = resolve_model_path(spec.weights, home, models_dir)
        labels = spec.labels or ()
        if spec.labels_file:
            labels_path = require_file(resolve_model_path(spec.labels_file, home, models_dir))
            labels = tuple(line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip())
        if spec.task == "classification" and spec.num_classes and labels and len(labels) != spec.num_classes:
            raise ValueError(f"{len(labels)} labels for num_classes={spec.num_classes}")
        mean, std = spec.normalization
        examples = tuple(example_file(path, home, models_dir) for path in spec.examples)
        self.info = ModelInfo(name=spec.name, version=spec.version, task=spec.task, input_size=spec.input_size,
                              input_mode=spec.mode, labels=tuple(labels), mean=mean, std=std,
                              description=spec.description or f"{spec.kind} model {self.weights_path.name}",
                              examples=examples)
        for key in ("max_batch_size", "max_batch_delay_ms", "precision", "precision_tolerance"):
            if getattr(spec, key) is not None:
                setattr(self, key, getattr(spec, key))
        if spec.calibration is not None:
            self.calibration_dir = resolve_model_path(spec.calibration, home, models_dir)
            if not self.calibration_dir.is_dir():
                raise ValueError(f"calibration {spec.calibration!r}: {self.calibration_dir} is not a folder")
        self.fixed_batch: int | None = None
        self.mean_tensor: torch.Tensor | None = None
        self.std_tensor: torch.Tensor | None = None

    def estimated_bytes(self) -> int | None:
        return self.weights_path.stat().st_size if self.weights_path.is_file() else None

    def load(self, device: torch.device) -> None:
        spec = self.spec
        require_file(self.weights_path)
        verify_sha256(self.weights_path, spec.sha256)
        if spec.kind == "torchscript":
            network = load_torchscript(self.weights_path, device)
        elif spec.kind == "export":
            network, self.fixed_batch = load_exported(self.weights_path, device)
        else:
            assert spec.architecture and spec.num_classes
            state = load_state_dict(self.weights_path)
            network = build_architecture(spec.architecture, spec.num_classes, state).to(device)
            del state
            network = network.to(memory_format=torch.channels_last)
        self.network = network if spec.kind == "export" else network.eval()  # exported programs are eval-only
        mean, std = self.info.mean, self.info.std
        self.mean_tensor = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std_tensor = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.device = device

    def preprocess(self, images: Sequence[Image.Image], options: ModelOptions) -> Batch[Fitted]:
        """Flatten alpha, convert mode, fit to input size; uint8 to the device, then normalize there."""
        fit = options.fit or self.spec.fit
        resample = options.resample or self.spec.resample
        resample = FILTER_ALIASES.get(resample, resample)
        if fit not in FIT_MODES or resample not in FILTERS:
            raise ValueError(f"fit must be one of {FIT_MODES} and resample one of {FILTERS}")
        assert self.info.input_size is not None
        keep_alpha = self.info.task == "image-to-image"
        fitted, items = [], []
        for image in images:
            opaque = flatten_alpha(image, options.background or "white").convert(self.info.input_mode)
            resized, geometry = fit_image(opaque, self.info.input_size, fit, resample)
            fitted.append(resized)
            items.append(Fitted(geometry, image if keep_alpha and has_alpha(image) else None))
        batch = pils_to_batch(fitted, dtype=torch.uint8, device=self.device).float().div_(255.0)
        batch = batch.sub_(self.mean_tensor).div_(self.std_tensor)
        if self.spec.kind == "state_dict":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return Batch(batch, items)

    def forward(self, batch: torch.Tensor) -> Any:
        """Run the network (in chunks when an export fixed the batch size); outputs are one item per image."""
        assert self.network is not None, f"model {self.info.key} is not loaded"
        with torch.inference_mode():
            if self.fixed_batch is None or self.fixed_batch == batch.shape[0]:
                return tasks.per_image_outputs(self.network(batch), self.info.task)
            outputs: list[Any] = []
            for start in range(0, batch.shape[0], self.fixed_batch):
                chunk = batch[start:start + self.fixed_batch]
                real = chunk.shape[0]
                if real < self.fixed_batch:
                    padding = chunk[-1:].expand(self.fixed_batch - real, *chunk.shape[1:])
                    chunk = torch.cat([chunk, padding])
                outputs.extend(tasks.per_image_outputs(self.network(chunk), self.info.task)[:real])
            return outputs

    def postprocess(self, outputs: Any, items: Sequence[Fitted], options: ModelOptions) -> list[dict[str, Any]]:
        """Task-shaped results in model-input pixels, each with its fit geometry (the API maps them back)."""
        task = self.info.task
        if task == "classification":
            results = top_k_predictions(tasks.stack(outputs), self.info.labels, options.top_k, self.info.name)
        elif task == "detection":
            threshold = self.spec.score_threshold if options.score_threshold is None else options.score_threshold
            results = [tasks.detections(item, self.info.labels, float(threshold)) for item in outputs]
        elif task == "segmentation":
            results = [tasks.segmentation(item, self.info.labels) for item in outputs]
        else:
            results = [tasks.image_output(output, item.geometry, item.original) for output, item in zip(outputs, items)]
        for result, item in zip(results, items):
            result["geometry"] = item.geometry
        return results


def example_file(path: str, home: Path, models_dir: Path) -> Path:
    """An entry's example input: resolved like its weights (inside the home), an existing PNG/JPEG/WebP/GIF/BMP."""
    resolved = resolve_model_path(path, home, models_dir)
    if not resolved.is_file():
        raise ValueError(f"example {path!r}: {resolved} does not exist")
    with resolved.open("rb") as stream:
        head = stream.read(4096)
    try:
        fmt = sniff_format(head)
    except ImageDecodeError:
        fmt = None
    if fmt not in EXAMPLE_FORMATS:
        raise ValueError(f"example {path!r} is {fmt or 'not an image'}; examples must be "
                         f"{', '.join(f.upper() for f in EXAMPLE_FORMATS)} (what browsers show)")
    return resolved


def models_file_path(home: Path, configured: str = "") -> Path | None:
    """The models file: the `models_file` setting (relative to home), else home/models.yaml|yml|toml."""
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else home / path
    return next((home / name for name in MODELS_FILE_NAMES if (home / name).is_file()), None)


def read_models_file(path: Path) -> list[Any]:
    """The raw `models:` list of a YAML or TOML models file."""
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ValueError(f"{path.name} must contain a `models:` list")
    return list(data.get("models") or [])


def register_declarative(registry: ModelRegistry, home: Path, models_dir: Path, path: Path | None) -> int:
    """Register every valid entry of the models file; invalid ones are listed as failed. Returns the count."""
    if path is None or not path.is_file():
        if path is not None:
            logger.warning("models file {} does not exist; no declarative models", path)
        return 0
    source = f"models file {path.name}"
    try:
        raw_entries = read_models_file(path)
    except (OSError, ValueError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        logger.error("cannot read models file {}: {}", path, exc)
        registry.register_failure(path.name, source, f"{type(exc).__name__}: {exc}")
        return 0
    registered = 0
    for position, raw in enumerate(raw_entries, start=1):
        name = str(raw.get("name") or f"{path.stem}-entry-{position}") if isinstance(raw, dict) else \
            f"{path.stem}-entry-{position}"
        try:
            spec = ModelSpec.model_validate(raw)
            model = DeclarativeModel(spec, home, models_dir)
            if not model.weights_path.is_file():
                logger.warning("model {}: weights file {} does not exist yet; loading it will fail until it does",
                               spec.name, model.weights_path)
            registry.register(model, source=f"{source} #{position}")
            registered += 1
        except (ValidationError, ValueError, WeightsError, OSError) as exc:
            message = _describe(exc)
            logger.error("models file {} entry #{} ({}) refused: {}", path.name, position, name, message)
            registry.register_failure(name, f"{source} #{position}", message)
    return registered


def _describe(exc: Exception) -> str:
    """One readable line for a refused entry (pydantic errors become 'field: problem; ...')."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
    return f"{type(exc).__name__}: {exc}"
