"""The predict path, free of Flask: bytes → decode → preprocess (request thread) → batched forward
(the model's inference thread) → postprocess (request thread), every stage timed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from loguru import logger
from PIL import Image

from ai_service.engine import DeadlineExceeded, DeviceOutOfMemory, Overloaded
from ai_service.engine.batcher import Batcher, Ticket
from ai_service.errors import ServiceError
from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.geometry import Geometry, source_json
from ai_service.imaging.io import decode_image
from ai_service.models.base import ImageModel, ModelOptions
from ai_service.models.pytree import merge_batches
from ai_service.observability import metrics
from ai_service.server.cores import budget, single_threaded
from ai_service.service.cache import CallCache
from ai_service.service.meshes import MeshViews, expand_meshes
from ai_service.service.runtime import Runtime, model_errors
from ai_service.service.upload import Caller, Upload


@dataclass
class Timer:
    """Accumulates milliseconds per stage for the `timing_ms` field."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.set(stage, self.stages.get(stage, 0.0) + (now - started) * 1000.0)
        return now

    def set(self, stage: str, milliseconds: float) -> None:
        self.stages[stage] = round(milliseconds, 3)


@dataclass
class Group:
    """Images that went through one preprocess call together (so their outputs merge into one postprocess
    call), each with the state its preprocess returned for it."""

    indices: list[int]
    items: Sequence[Any]
    options: ModelOptions
    tickets: list[Ticket] = field(default_factory=list)


def decode_uploads(
    model: ImageModel, uploads: Sequence[Upload], max_pixels: int
) -> list[Image.Image | ImageDecodeError]:
    """Decode each upload at the size the model needs; a bad item becomes its error, not an exception."""
    decoded: list[Image.Image | ImageDecodeError] = []
    for upload in uploads:
        try:
            decoded.append(
                decode_image(
                    upload.data,
                    max_pixels=max_pixels,
                    target_size=model.decode_size(),
                    layer=upload.layer,
                    layers=upload.layers,
                )
            )
        except ImageDecodeError as error:
            decoded.append(error)
    return decoded


def preprocess_groups(
    model: ImageModel, images: dict[int, Image.Image], options: ModelOptions
) -> tuple[list[Group], list[torch.Tensor], dict[int, Exception]]:
    """One preprocess call for all images; if it fails, one call per image so only the bad one fails."""
    indices = list(images)
    try:
        batch = model.preprocess([images[i] for i in indices], options)
        if batch.tensor.shape[0] != len(indices):
            raise RuntimeError(f"preprocess returned {batch.tensor.shape[0]} samples for {len(indices)} images")
        return [Group(indices, batch.states(), options)], list(batch.tensor.unbind(0)), {}
    except Exception as error:  # noqa: BLE001 - isolate the image that broke preprocessing
        if len(indices) == 1:
            return [], [], {indices[0]: error}
    groups, samples, failures = [], [], {}
    for index in indices:
        try:
            batch = model.preprocess([images[index]], options)
            sample, items = batch.tensor[0], batch.states()
        except Exception as error:  # noqa: BLE001
            failures[index] = error
            continue
        groups.append(Group([index], items, options))
        samples.append(sample)
    return groups, samples, failures


def error_entry(error: ServiceError) -> dict[str, Any]:
    """One input's failure as its `results` entry: the error envelope plus the status it would have alone."""
    return {"error": error.body(), "status": error.status}


#: A bulk (job) call may wait this many request deadlines: its images queue behind interactive traffic, which
#: goes first, and must not time out at the interactive deadline because the upload page was busy (past it:
#: `timeout`, and the job's executor retries the chunk later).
BULK_DEADLINE_FACTOR = 10

#: The entry of an image whose forward or postprocess failed (the exception itself is logged).
MODEL_FAILED = ServiceError("internal_error", "The model failed on this image; the error has been logged.")


@dataclass
class PredictOutcome:
    """What one predict call produced, ready for any caller (JSON API, HTML page, CLI, job) to present."""

    #: The model that ran: name, version and task (classification, image-to-image, ...).
    model: str
    version: str
    task: str
    #: One entry per input, in request order: the model's result in source-image pixels, or
    #: `{"index", "filename", "status", "error": {code, message[, details]}}` for an input that failed alone.
    results: list[dict[str, Any]]
    #: Milliseconds per stage (load, decode, preprocess, queue, forward, postprocess) and `total`.
    timing_ms: dict[str, float]
    #: How many images ran through the network together; 0 when none reached it.
    batch_size: int = 0
    #: Every result came from the result cache (service/cache.py).
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The fields of the API's PredictResponse (`batch_size` only when the network ran)."""
        body = {
            "model": self.model,
            "version": self.version,
            "task": self.task,
            "results": self.results,
            "timing_ms": self.timing_ms,
        }
        if self.batch_size:
            body["batch_size"] = self.batch_size
        if self.cached:
            body["cached"] = True
        return body


def predict(
    runtime: Runtime,
    model_ref: str | None,
    uploads: Sequence[Upload | ServiceError],
    options: ModelOptions,
    caller: Caller | None = None,
    *,
    bulk: bool = False,
    cache: bool = True,
    meshes: MeshViews | None = None,
) -> PredictOutcome:
    """Run the model `model_ref` names (None: the default) over the uploads; one result per input, in order.

    An input rejected before decoding (a ServiceError in `uploads`) keeps its place as an error entry. Raises
    only ServiceError: unknown_model, model_unavailable, overloaded, timeout, out_of_memory. With a `caller` and
    history on, every input is recorded (failures too) and its result names its row (`history_id`).
    `bulk`: a job's images, in the engine's low-priority lane (interactive samples go first) with a deadline
    of BULK_DEADLINE_FACTOR request timeouts. `cache`: answer inputs seen before from the result cache
    (service/cache.py; results say `cached: true`) and store the new answers; False: compute everything.
    A 3D model among the inputs runs as its rendered views (`meshes`: how many, how large; service/meshes.py)
    and answers with one entry holding each view's result and their mean scores.
    """
    entry = runtime.resolve(model_ref)
    plan = expand_meshes(uploads, meshes or MeshViews(), runtime.settings.meshes)
    uploads = plan.uploads
    info = entry.info
    history = runtime.history if caller is not None else None
    usable = [item for item in uploads if isinstance(item, Upload)]
    outcome = PredictOutcome(info.name, info.version, info.task, [], {})
    loaded = entry.model if entry.state == "loaded" else None
    cached = CallCache(runtime.cache if cache else None, loaded, usable, options)
    missed = [upload for position, upload in enumerate(usable) if position not in cached.hits]
    if missed:
        try:
            with model_errors(runtime.registry, info.key):  # removed or failed to load since it was resolved
                outcome = _predict(runtime, info.key, missed, options, bulk)
        except ServiceError as error:
            if history is not None:
                history.record_failure(caller, (info.name, info.version, info.task), uploads, error)
            raise
    elif usable:
        outcome.cached = True
    if cached.hits:
        outcome.timing_ms.update(cache=cached.ms, total=round(outcome.timing_ms.get("total", 0.0) + cached.ms, 3))
    produced, position, results = iter(outcome.results), -1, []
    for index, item in enumerate(uploads):
        if not isinstance(item, Upload):
            results.append(item_error(item, index))
            continue
        position += 1
        if position in cached.hits:
            results.append(cached.answer(position, item, index))
        else:
            results.append(locate(next(produced), index))
            cached.keep(entry.model if entry.state == "loaded" else None, position, item, results[-1])
    outcome.results = results
    if history is not None:
        ids = history.record(
            caller,
            (outcome.model, outcome.version, outcome.task),
            uploads,
            outcome.results,
            outcome.timing_ms,
            outcome.batch_size,
        )
        for result, row_id in zip(outcome.results, ids):
            if row_id is not None:
                result["history_id"] = row_id
    outcome.results = plan.fold(outcome.results)
    return outcome


def item_error(error: ServiceError, index: int) -> dict[str, Any]:
    """An input rejected before decoding (bad base64, a URL) as its entry in `results`."""
    return {"index": index, "filename": "", **error_entry(error)}


def _predict(
    runtime: Runtime, key: str, uploads: Sequence[Upload], options: ModelOptions, bulk: bool = False
) -> PredictOutcome:
    """Lease the model and run the pipeline; engine failures become the ServiceErrors clients can act on."""
    began = time.perf_counter()
    single_threaded()
    registry, engine = runtime.registry, runtime.engine
    timeout = engine.settings.request_timeout_s * (BULK_DEADLINE_FACTOR if bulk else 1)
    deadline = began + timeout
    timer = Timer()
    was_loaded = registry.resolve(key).state == "loaded"
    with registry.using(key) as model:
        started = timer.add("load", began) if not was_loaded else began
        batcher = engine.batcher(model)
        name = model.info.name
        try:
            with budget().in_flight():  # another worker's lone forward leaves this one its cores
                results, batch_size = _run(
                    model, batcher, uploads, options, runtime.settings.limits.max_pixels, deadline, timer, started, bulk
                )
        except Overloaded as error:
            raise ServiceError(
                "overloaded",
                f"The server is busy ({error}); retry in a moment.",
                {"model": name},
                headers={"Retry-After": "1"},
            ) from None
        except DeadlineExceeded:
            metrics.record_items(name, "timeout", len(uploads))
            raise ServiceError(
                "timeout",
                f"No result within the {timeout:g} s request deadline; the server is "
                "overloaded or the model is too slow for it.",
                {"model": name, "timeout_s": timeout},
            ) from None
        except DeviceOutOfMemory:
            metrics.record_items(name, "oom", len(uploads))
            raise ServiceError(
                "out_of_memory",
                "The model ran out of device memory for these images; retry in a "
                "moment or send fewer or smaller images.",
                {"model": name},
                headers={"Retry-After": "1"},
            ) from None
    for kind in ("ok", "invalid", "error"):
        metrics.record_items(name, kind, sum(_outcome(result) == kind for result in results))
    timer.set("total", (time.perf_counter() - began) * 1000.0)
    return PredictOutcome(model.info.name, model.info.version, model.info.task, results, timer.stages, batch_size)


def _outcome(result: dict[str, Any]) -> str:
    """ok, invalid (the client's image) or error (ours), for the per-image metrics."""
    if "error" not in result:
        return "ok"
    return "invalid" if result["status"] < 500 else "error"


def _run(
    model: ImageModel,
    batcher: Batcher,
    uploads: Sequence[Upload],
    options: ModelOptions,
    max_pixels: int,
    deadline: float,
    timer: Timer,
    started: float,
    bulk: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """decode → preprocess → batched forward → postprocess for one request, inside its batcher arrival."""
    per_item: dict[int, dict[str, Any]] = {}
    with batcher.arrival(len(uploads), bulk=bulk, until=deadline) as arrival:
        decoded = decode_uploads(model, uploads, max_pixels)
        started = timer.add("decode", started)
        images = {i: item for i, item in enumerate(decoded) if isinstance(item, Image.Image)}
        for index, item in enumerate(decoded):
            if isinstance(item, ImageDecodeError):
                per_item[index] = error_entry(item)
        groups: list[Group] = []
        if images:
            groups, samples, failures = preprocess_groups(model, images, options)
            started = timer.add("preprocess", started)
            for index, error in failures.items():
                logger.warning("model {} could not preprocess {}: {}", model.info.name, uploads[index].filename, error)
                per_item[index] = error_entry(
                    ServiceError("invalid_image", f"The model could not prepare this image: {error}")
                )
            if time.perf_counter() > deadline:
                raise DeadlineExceeded("deadline passed while decoding")
            tickets = arrival.submit(samples, deadline, tags=[i for g in groups for i in g.indices])
            for group in groups:
                group.tickets, tickets = tickets[: len(group.indices)], tickets[len(group.indices) :]
    all_tickets = [ticket for group in groups for ticket in group.tickets]
    batch_size = 0
    if all_tickets:
        batcher.wait(all_tickets, deadline)
        if any(isinstance(ticket.error, DeviceOutOfMemory) for ticket in all_tickets):
            raise DeviceOutOfMemory(model.info.name)
        timer.set("queue", max(ticket.queue_ms for ticket in all_tickets))
        timer.set("forward", max(ticket.forward_ms for ticket in all_tickets))
        batch_size = max(ticket.batch_size for ticket in all_tickets)
        post_started = time.perf_counter()
        for group in groups:
            per_item.update(_postprocess(model, group))
        timer.add("postprocess", post_started)
    results = []
    for index, upload in enumerate(uploads):
        entry = per_item[index]
        if "error" not in entry:
            image = decoded[index]
            entry = {"width": image.width, "height": image.height, "mode": image.mode, **entry}
            if "exif_orientation" in image.info:  # a raster: what its header said, read once while decoding
                entry["source"] = (image.info["exif_orientation"], image.info["source_size"])
        results.append({"filename": upload.filename, **entry})
    return results, batch_size


def _postprocess(model: ImageModel, group: Group) -> dict[int, dict[str, Any]]:
    """The group's results by image index; images whose forward failed get an error entry."""
    entries: dict[int, dict[str, Any]] = {}
    good = []
    for index, item, ticket in zip(group.indices, group.items, group.tickets):
        if ticket.error is None:
            good.append((index, item, ticket.output))
        else:
            entries[index] = error_entry(MODEL_FAILED)
    if not good:
        return entries
    try:
        produced = model.postprocess(
            merge_batches([output for _, _, output in good]), [item for _, item, _ in good], group.options
        )
        if len(produced) != len(good):
            raise RuntimeError(f"postprocess returned {len(produced)} results for {len(good)} images")
    except Exception as error:  # noqa: BLE001 - a model bug becomes a logged 500 for these images only
        logger.opt(exception=error).error("model {} failed in postprocess", model.info.name)
        produced = [error_entry(MODEL_FAILED)] * len(good)
    entries.update({index: result for (index, _, _), result in zip(good, produced)})
    return entries


def locate(result: dict[str, Any], index: int) -> dict[str, Any]:
    """Number the result and express it in the source image's pixels: geometry (EXIF, size), boxes, masks."""
    if "error" in result:
        return {"index": index, **result}
    decoded = (result["width"], result["height"])
    result = dict(result)
    # Decoding recorded a raster's EXIF orientation and header size; SVG/PSD have neither.
    orientation, source_size = result.pop("source", (1, None))
    source_size = tuple(source_size or decoded)
    fitted: Geometry | None = result.pop("geometry", None)
    if fitted is None:
        geometry = source_json(decoded, source_size)
    else:
        placed = fitted.rebase(source_size, api_precision=True)
        result = placed.result_to_original(result)
        geometry = placed.as_json()
    geometry.update(exif_orientation=orientation, exif_rotated=orientation != 1)
    width, height = geometry["original_size"]
    return {**result, "index": index, "width": width, "height": height, "geometry": geometry}
