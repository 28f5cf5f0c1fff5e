"""The worker side of the local pool: one Runtime (one model copy) per process, one predict call per batch.

Runs in spawned processes (never forked: torch's threads would not survive a fork) or, for one worker, in a thread of
the CLI itself. Each batch goes through `service.predict.predict` with a `cli` caller, so rows land in the history as
they do for `ai-service predict` on a few files.
"""

from __future__ import annotations

import signal
from collections.abc import MutableSequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ai_service.cli.inputs import Item
from ai_service.cli.records import write_output

if TYPE_CHECKING:
    from ai_service.schemas import PredictOptions
    from ai_service.service.runtime import Runtime

#: Errors of a whole predict call that every other batch would hit too: the run stops instead.
FATAL = frozenset({"unknown_model", "model_unavailable", "validation_error"})


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs, picklable: spawned processes share nothing else with the CLI."""

    home: str | None
    model: str | None
    options: dict[str, Any]
    outputs: str | None
    #: Settings overrides of this worker (torch threads, GPUs, logging).
    overrides: dict[str, Any]
    run_id: str
    client: str
    in_process: bool = False
    #: AI_SERVICE_GPUS as the CLI read it: with several GPUs listed each worker process takes one.
    gpus: str = ""


@dataclass
class BatchOutcome:
    """What one batch produced: the model that ran and one JSON-able entry per item, or the error that ends the run."""

    model: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)
    fatal: dict[str, Any] | None = None


_state: dict[str, Any] = {}


def init_worker(config: WorkerConfig, slots: MutableSequence[int] | None = None, taken: Any = None) -> None:
    """Build this process's runtime once; a failure is kept and answered to every batch (the pool must not respawn).

    Pool workers first take the next slot (`taken` counts them): its share of the cores and, with several GPUs
    listed, its own GPU, as gunicorn's and Celery's workers do.
    """
    from ai_service.cli.common import load_cli_settings
    from ai_service.schemas import PredictOptions
    from ai_service.server.placement import enter_worker
    from ai_service.server.process import configure_process
    from ai_service.service.runtime import build_runtime

    if not config.in_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the CLI decides how to stop; a terminal's ^C reaches us too
    if slots is not None and taken is not None:
        with taken.get_lock():
            slot, taken.value = taken.value, taken.value + 1
        enter_worker(slots, slot % len(slots), config.gpus)  # before CUDA starts: it narrows AI_SERVICE_GPUS
    _state.clear()
    try:
        settings = load_cli_settings(config.home, config.overrides)
        configure_process(settings)
        runtime = build_runtime(settings, run_jobs=False)
    except Exception as error:  # noqa: BLE001 - reported by the first batch, with its message
        _state["failure"] = {"code": "model_unavailable", "message": f"worker could not start: {error}"}
        return
    _state.update(config=config, runtime=runtime, options=PredictOptions.model_validate(config.options))
    if not config.in_process:
        from multiprocessing import util

        util.Finalize(None, runtime.close, exitpriority=10)  # flush the history rows when the pool ends this worker


def close_worker() -> None:
    """Stop the model threads and write the history rows (the in-process worker; pool workers do it at exit)."""
    runtime = _state.pop("runtime", None)
    if runtime is not None:
        runtime.close()


def run_batch(items: list[Item]) -> BatchOutcome:
    """Predict one batch of files; unreadable files and bad images become per-item errors."""
    from ai_service.errors import ServiceError
    from ai_service.service.predict import item_error, predict
    from ai_service.service.upload import Caller, Upload

    if "failure" in _state:
        return BatchOutcome(fatal=_state["failure"])
    config: WorkerConfig = _state["config"]
    runtime: Runtime = _state["runtime"]
    options: PredictOptions = _state["options"]
    uploads: list[Upload | ServiceError] = []
    for item in items:
        try:
            uploads.append(Upload(Path(item.path).read_bytes(), item.name))
        except OSError as error:
            uploads.append(ServiceError("unprocessable", f"Cannot read {item.path}: {error.strerror or error}"))
    caller = Caller("cli", config.run_id, config.client, item_indexes=tuple(item.index for item in items))
    model_options = options.model_options(runtime.settings.models.default_top_k)
    try:
        outcome = predict(runtime, config.model, uploads, model_options, caller, cache=options.cache == "on")
    except ServiceError as error:
        if error.code in FATAL:
            return BatchOutcome(fatal=error.body())
        entry = runtime.resolve(config.model).info
        results = [item_error(error, index) for index in range(len(items))]
        return BatchOutcome(f"{entry.name}@{entry.version}", [_finish(r, i, options) for r, i in zip(results, items)])
    entries = [_finish(result, item, options) for result, item in zip(outcome.results, items)]
    return BatchOutcome(f"{outcome.model}@{outcome.version}", entries)


def _finish(result: dict[str, Any], item: Item, options: PredictOptions) -> dict[str, Any]:
    """The entry as /predict answers it, numbered in the run; image outputs written to --outputs or as data URLs."""
    from PIL import Image

    from ai_service.service.outputs import encode_output, serialize

    result = {**result, "index": item.index, "filename": item.name}
    outputs = _state["config"].outputs
    if outputs and "error" not in result:
        for key, suffix in (("image", ""), ("mask", ".mask")):
            image = result.get(key)
            if isinstance(image, Image.Image):
                fmt = options.output_format if key == "image" else "png"
                data = encode_output(image, options) if key == "image" else _png(image)
                written = write_output(Path(outputs), item.target, data, "jpg" if fmt == "jpeg" else fmt, suffix)
                result[key] = written
                result.setdefault("output", written)
    return serialize(result, options)


def _png(image: Any) -> bytes:
    """A mask as lossless PNG bytes."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
