"""The registry: which models exist, which are on the device, loading each once, evicting under a budget."""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from loguru import logger

from ai_service.model_refs import MAX_PART_LENGTH, UNSAFE_CHARACTERS
from ai_service.observability import metrics
from ai_service.devices import release_memory
from ai_service.models import precision
from ai_service.models.base import ImageModel, ModelInfo, check_contract
from ai_service.settings import EVICTION_MODES

#: Said when a load runs out of GPU memory: since 2026-11-28 a GPU box starts one worker per core, each with its copy.
GPU_COPIES_HINT = (
    " (every gunicorn worker holds its own copy of each model on the GPU, and AI_SERVICE_WORKERS=0 starts one "
    "worker per core: set AI_SERVICE_WORKERS lower for models this large)"
)
CPU = torch.device("cpu")
#: What a registration that failed never declared: listed as null, not as ModelInfo's defaults.
UNDECLARED = {"version": None, "task": None, "input_size": None, "input_mode": None}


class UnknownModelError(KeyError):
    """No model of that name (or name@version) is registered."""

    def __init__(self, ref: str, available: Iterable[str] = ()) -> None:
        super().__init__(ref)
        self.ref, self.available = ref, list(available)

    def __str__(self) -> str:
        return f"no model {self.ref!r}; available: {', '.join(self.available) or 'none'}"


class ModelLoadError(RuntimeError):
    """The model is registered but could not be loaded (bad weights, broken plugin)."""


class ModelStateError(RuntimeError):
    """The lifecycle step makes no sense in the model's current state (offloading an unloaded model)."""


class ModelBusyError(RuntimeError):
    """Requests kept using the model past the timeout, so it was not unloaded or offloaded."""


def version_key(version: str) -> tuple:
    """Natural ordering for versions: '2' < '10', '1.2' < '1.10'; the largest is the default."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", version) if part)


@dataclass(eq=False)
class ModelEntry:
    """A registered model (or a plugin that failed to register) and its lifecycle state."""

    info: ModelInfo
    model: ImageModel | None
    source: str = "builtin"
    state: str = "registered"
    error: str | None = None
    last_used: float | None = None
    load_seconds: float | None = None
    loads: int = 0
    in_use: int = 0
    known_bytes: int | None = None
    failed_at: float | None = None

    def device_bytes(self, device: torch.device) -> int:
        """Bytes of this model's tensors that sit on `device`."""
        if self.model is None:
            return 0
        return sum(n for where, n in self.model.weight_bytes().items() if torch.device(where) == device)

    def status(self, device: torch.device, default: bool) -> dict[str, Any]:
        held = self.model.weight_bytes() if self.model is not None else {}
        on_device = sum(n for where, n in held.items() if torch.device(where) == device)
        if self.state == "offloaded" and device.type == "cpu":
            on_device = 0  # offloading to CPU RAM from a CPU device moves nothing; count it as offloaded
        info = self.info.as_dict() if self.model is not None else {**self.info.as_dict(), **UNDECLARED}
        key = self.info.key if self.model is not None else self.info.name
        return {**info, "key": key, "default": default, "source": self.source,
                "state": self.state, "error": self.error, "last_used": self.last_used,
                "load_seconds": self.load_seconds, "loads": self.loads, "in_use": self.in_use,
                "parameters": self.model.parameter_count() if self.model is not None else 0,
                "bytes_on_device": on_device, "bytes_offloaded": sum(held.values()) - on_device,
                # the largest input (pixels) the model itself accepts, when it has its own limit: the page warns first
                "max_input_pixels": getattr(self.model, "max_input_pixels", None)}


class ModelRegistry:
    """Models by name@version for one device: lazy thread-safe loading, leases, LRU eviction under a budget.

    `_lock` guards entries, states and lease counts and is held only briefly; `_transition` serializes
    the slow steps (load, offload, unload, evict), so two first requests load a model once and two
    loads never overshoot the budget together. Requests that find their model loaded take no slow lock.
    """

    def __init__(self, device: torch.device, *, memory_budget: int | None = None, max_loaded: int = 0,
                 eviction: str = "auto", warmup: bool = False, busy_timeout: float = 30.0,
                 retry_failed_after: float = 0.0, precision: str = "fp32") -> None:
        if eviction not in EVICTION_MODES:
            raise ValueError(f"eviction must be one of {EVICTION_MODES}, got {eviction!r}")
        if max_loaded < 0:
            raise ValueError("max_loaded must be 0 (no limit) or positive")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.retry_failed_after = retry_failed_after
        self.memory_budget = memory_budget
        self.max_loaded = max_loaded
        self.eviction = ("unload" if device.type == "cpu" else "offload") if eviction == "auto" else eviction
        self.warmup = warmup
        #: The precision of models that declare none (AI_SERVICE_PRECISION); each load checks it (models/precision.py).
        self.precision = precision
        self.busy_timeout = busy_timeout
        self._entries: dict[str, dict[str, ModelEntry]] = {}
        self._failures: list[ModelEntry] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._transition = threading.RLock()
        self._source = "builtin"
        self._release_listeners: list[Callable[[ImageModel], None]] = []
        self._overcommitted = False

    # ---- registration -------------------------------------------------------------------------
    def register(self, model: ImageModel, *, replace: bool = False, source: str | None = None) -> None:
        """Add a model (not loaded yet); a duplicate name@version is an error unless `replace`, which
        unloads the model it replaces once its requests have finished; a model that breaks the contract
        (a hook or `info` missing) raises ModelContractError showing the code to add."""
        check_contract(model)
        info = model.info
        with self._lock:
            versions = self._entries.setdefault(info.name, {})
            previous = versions.get(info.version)
            if previous is not None and not replace:
                raise ValueError(f"a model named {info.key!r} is already registered (from {previous.source})")
        if previous is not None and previous.model is not None and previous.state != "registered":
            self.unload(info.key)
        with self._lock:
            versions[info.version] = ModelEntry(info, model, source or self._source)
        logger.debug("registered model {} from {}", info.key, source or self._source)

    def register_failure(self, name: str, source: str, error: str) -> None:
        """Record a plugin or models-file entry that could not be registered; it is listed as failed."""
        with self._lock:
            self._failures.append(ModelEntry(ModelInfo(name=_safe_name(name)), None, source, "failed", error))

    @contextmanager
    def registering_from(self, source: str) -> Iterator[None]:
        """Attribute models registered inside the block (e.g. by a plugin's register()) to `source`."""
        previous, self._source = self._source, source
        try:
            yield
        finally:
            self._source = previous

    def on_release(self, listener: Callable[[ImageModel], None]) -> None:
        """Call `listener(model)` after a model leaves the device (unload, offload, eviction), so holders of
        per-model artefacts (compiled graphs, CUDA graphs, cached batches) can drop them too."""
        self._release_listeners.append(listener)

    def _released(self, entry: ModelEntry, started: float) -> None:
        assert entry.model is not None
        for listener in list(self._release_listeners):
            try:
                listener(entry.model)
            except Exception as exc:  # a listener must never block freeing memory
                logger.opt(exception=exc).error("release listener failed for {}", entry.info.key)
        release_memory(self.device)
        metrics.record_model_unload(entry.info.key, time.perf_counter() - started)

    # ---- lookup -------------------------------------------------------------------------------
    def resolve(self, ref: str) -> ModelEntry:
        """The one place that maps 'name' (newest version) or 'name@version' to its entry."""
        name, _, version = str(ref).strip().partition("@")
        with self._lock:
            versions = self._entries.get(name, {})
            if versions and not version:
                if len(versions) == 1:  # the usual case, asked several times per request: no version parsing
                    return next(iter(versions.values()))
                return versions[max(versions, key=version_key)]
            if version in versions:
                return versions[version]
            failure = next((f for f in self._failures if f.info.name == name and not versions), None)
        if failure is not None:
            raise ModelLoadError(f"model {name!r} failed to register ({failure.source}): {failure.error}")
        raise UnknownModelError(str(ref), self.keys())

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def versions(self, name: str) -> list[str]:
        """The versions registered under `name`, oldest first (the last is the default)."""
        with self._lock:
            return sorted(self._entries.get(name, {}), key=version_key)

    def keys(self) -> list[str]:
        """Every addressable name@version."""
        return [entry.info.key for entry in self._sorted_entries()]

    def loaded_names(self) -> list[str]:
        return [entry.info.key if self._has_versions(entry) else entry.info.name
                for entry in self._sorted_entries() if entry.state == "loaded"]

    def statuses(self) -> list[dict[str, Any]]:
        """One status per registered model (then per failed plugin), sorted by name and version."""
        return [self.status(entry) for entry in (*self._sorted_entries(), *list(self._failures))]

    def status(self, entry: ModelEntry) -> dict[str, Any]:
        """One entry's status, as statuses() lists it; `default` marks the version its bare name addresses."""
        status = entry.status(self.device, entry.model is not None and self.resolve(entry.info.name) is entry)
        check = getattr(entry.model, "precision_check", None) if entry.state in ("loaded", "offloaded") else None
        status["precision"] = check.used if check is not None else None
        status["precision_check"] = check.as_dict() if check is not None else None
        return status

    def memory(self) -> dict[str, Any]:
        """The budget and how much of it the loaded models use."""
        entries = self._sorted_entries()
        return {"budget_bytes": self.memory_budget, "max_loaded_models": self.max_loaded or None,
                "eviction": self.eviction, "loaded_models": sum(e.state == "loaded" for e in entries),
                "models_bytes_on_device": sum(e.device_bytes(self.device) for e in entries
                                              if e.state == "loaded")}

    def _sorted_entries(self) -> list[ModelEntry]:
        with self._lock:
            return [self._entries[name][version] for name in sorted(self._entries)
                    for version in sorted(self._entries[name], key=version_key)]

    def _has_versions(self, entry: ModelEntry) -> bool:
        return len(self._entries.get(entry.info.name, {})) > 1

    # ---- lifecycle ----------------------------------------------------------------------------
    def get(self, ref: str) -> ImageModel:
        """The loaded model, loading it now if needed; prefer `using()` while running requests."""
        entry = self.resolve(ref)
        self._ensure_loaded(entry)
        entry.last_used = time.time()
        assert entry.model is not None
        return entry.model

    @contextmanager
    def using(self, ref: str) -> Iterator[ImageModel]:
        """Lease the loaded model for one request: it cannot be evicted or unloaded until the block ends."""
        entry = self.resolve(ref)
        while not self._lease(entry):
            self._ensure_loaded(entry)
        try:
            assert entry.model is not None
            yield entry.model
        finally:
            with self._lock:
                entry.in_use -= 1
                entry.last_used = time.time()
                self._idle.notify_all()
            if self._overcommitted:
                self._rebalance()

    def load(self, ref: str) -> ModelEntry:
        """Make sure the model is on the device (loading or reloading it, even right after a failure)."""
        entry = self.resolve(ref)
        self._ensure_loaded(entry, retry_now=True)
        entry.last_used = time.time()
        return entry

    def preload(self, refs: Iterable[str]) -> list[str]:
        """Load models at startup so the first request does not pay for it; returns the ones that failed.

        An unknown name is a configuration error and raises; a model that fails to load is logged and
        listed as failed (readiness probes report it) while the other models serve.
        """
        refs = list(refs)
        for ref in refs:
            self.resolve(ref)
        failed = []
        for ref in refs:
            try:
                self.load(ref)
            except ModelLoadError as error:
                logger.error("preloading {} failed; serving without it: {}", ref, error)
                failed.append(ref)
        return failed

    def unload(self, ref: str, timeout: float | None = None) -> ModelEntry:
        """Drop the weights and return their memory; the next request loads the model again."""
        entry = self.resolve(ref)
        with self._transition:
            if entry.model is None:
                raise ModelStateError(f"model {entry.info.key} failed to register; there is nothing to unload")
            previous = entry.state
            started = time.perf_counter()
            self._drain(entry, "registered", timeout)
            entry.model.unload()
            if previous == "failed":
                entry.error = None
            if previous != "registered":
                self._released(entry, started)
        logger.info("unloaded model {}", entry.info.key)
        return entry

    def offload(self, ref: str, timeout: float | None = None) -> ModelEntry:
        """Move the weights to CPU RAM: device memory is freed and the next request reloads them quickly."""
        entry = self.resolve(ref)
        with self._transition:
            if entry.state != "loaded":
                raise ModelStateError(f"model {entry.info.key} is {entry.state}, not loaded; nothing to offload")
            started = time.perf_counter()
            self._drain(entry, "offloaded", timeout)
            entry.model.to(CPU)
            self._released(entry, started)
        logger.info("offloaded model {} to CPU", entry.info.key)
        return entry

    def _lease(self, entry: ModelEntry) -> bool:
        with self._lock:
            if entry.state != "loaded":
                return False
            entry.in_use += 1
            entry.last_used = time.time()
            return True

    def _drain(self, entry: ModelEntry, new_state: str, timeout: float | None) -> None:
        """Switch the state (new requests now wait on `_transition`) and wait for in-flight ones to finish."""
        deadline = time.monotonic() + (self.busy_timeout if timeout is None else timeout)
        with self._lock:
            previous, entry.state = entry.state, new_state
            while entry.in_use:
                left = deadline - time.monotonic()
                if left <= 0:
                    entry.state = previous
                    raise ModelBusyError(f"model {entry.info.key} is still in use by {entry.in_use} request(s)")
                self._idle.wait(left)

    def _ensure_loaded(self, entry: ModelEntry, retry_now: bool = False) -> None:
        """Load (or bring back from CPU) under `_transition`, evicting least recently used models first.

        A model whose load failed is retried at most every `retry_failed_after` seconds (explicit
        loads retry at once), so a broken multi-GB file is not re-read and re-hashed on every request.
        """
        if entry.state == "loaded":
            return
        with self._transition:
            if entry.state == "loaded":
                return
            if entry.model is None:
                raise ModelLoadError(f"model {entry.info.name!r} failed to register ({entry.source}): {entry.error}")
            since = time.monotonic() - (entry.failed_at or 0.0)
            if entry.state == "failed" and not retry_now and since < self.retry_failed_after:
                raise ModelLoadError(f"model {entry.info.key!r} could not be loaded {since:.0f}s ago (retrying "
                                     f"after {self.retry_failed_after:g}s): {entry.error}")
            self._make_room(entry, entry.known_bytes or entry.model.estimated_bytes())
            started = time.perf_counter()
            try:
                try:
                    seconds = self._bring_up(entry)
                except torch.cuda.OutOfMemoryError:
                    if not self._make_room(entry, None, everything=True):
                        raise
                    logger.warning("out of device memory loading {}; evicted idle models, retrying", entry.info.key)
                    seconds = self._bring_up(entry)
            except Exception as exc:
                metrics.record_model_load(entry.info.key, time.perf_counter() - started, ok=False)
                hint = GPU_COPIES_HINT if isinstance(exc, torch.cuda.OutOfMemoryError) else ""
                raise self._failed(entry, f"{type(exc).__name__}: {exc}{hint}") from exc
            metrics.record_model_load(entry.info.key, seconds, ok=True)
            entry.known_bytes = entry.device_bytes(self.device)
            with self._lock:
                entry.state, entry.error, entry.load_seconds = "loaded", None, round(seconds, 4)
                entry.loads += 1
            logger.info("loaded model {} on {} in {:.3f}s ({} parameters, {:.1f} MiB)", entry.info.key, self.device,
                        seconds, entry.model.parameter_count(), entry.known_bytes / 2**20)
            self._make_room(entry, entry.known_bytes)

    def _bring_up(self, entry: ModelEntry) -> float:
        """Load from scratch, or move offloaded weights back; undoes partial work on failure."""
        model = entry.model
        assert model is not None
        started = time.perf_counter()
        try:
            if entry.state == "offloaded":
                model.to(self.device)
            else:
                model.load(self.device)
                if self.warmup:
                    model.warmup()
                precision.settle(model, self.precision)
        except BaseException:
            model.unload()
            with self._lock:
                entry.state = "registered"
            release_memory(self.device)
            raise
        return time.perf_counter() - started

    def _failed(self, entry: ModelEntry, error: str) -> ModelLoadError:
        with self._lock:
            entry.state, entry.error, entry.failed_at = "failed", error, time.monotonic()
        logger.error("loading model {} failed: {}", entry.info.key, error)
        return ModelLoadError(f"model {entry.info.key!r} could not be loaded: {error}")

    def _rebalance(self) -> None:
        """After a lease ends, evict what a busy moment forced over the limits (never blocks a request)."""
        if not self._transition.acquire(blocking=False):
            return
        try:
            self._overcommitted = False
            self._make_room(None, 0)
        finally:
            self._transition.release()

    def _make_room(self, target: ModelEntry | None, needed: int | None, everything: bool = False) -> bool:
        """Evict idle loaded models, least recently used first, until `target` (if any) fits; True if any went."""
        evicted = False
        incoming = 0 if target is None else 1
        while True:
            with self._lock:
                others = [e for versions in self._entries.values() for e in versions.values()
                          if e.state == "loaded" and e is not target]
                used = sum(e.device_bytes(self.device) for e in others)
                over_count = bool(self.max_loaded) and len(others) + incoming > self.max_loaded
                over_budget = (self.memory_budget is not None and needed is not None
                               and used + needed > self.memory_budget)
                if not (everything or over_count or over_budget):
                    return evicted
                idle = [e for e in others if e.in_use == 0]
                if not idle:
                    if not everything and others:
                        self._overcommitted = True
                        logger.warning("over the memory limits while every other loaded model is in use "
                                       "({} needs {} bytes; {} bytes in {} model(s); budget {}, max loaded {})",
                                       target.info.key if target else "-", needed, used, len(others),
                                       self.memory_budget, self.max_loaded or None)
                    elif not everything and target is not None:
                        logger.warning("{} alone needs {} bytes, more than the memory budget {}",
                                       target.info.key, needed, self.memory_budget)
                    return evicted
                victim = min(idle, key=lambda e: e.last_used or 0.0)
                victim.state = "offloaded" if self.eviction == "offload" else "registered"
            logger.info("evicting model {} ({}) to make room for {}", victim.info.key, self.eviction,
                        target.info.key if target else "the limits")
            assert victim.model is not None
            started = time.perf_counter()
            if self.eviction == "offload":
                victim.model.to(CPU)
            else:
                victim.model.unload()
            self._released(victim, started)
            evicted = True


def _safe_name(name: str) -> str:
    """A failure's display name that ModelInfo accepts (file names may contain spaces)."""
    cleaned = UNSAFE_CHARACTERS.sub("-", name).strip("-.") or "plugin"
    return cleaned[:MAX_PART_LENGTH] if cleaned[0].isalnum() else "x" + cleaned[: MAX_PART_LENGTH - 1]
