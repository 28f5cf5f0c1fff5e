"""The predict path, free of Flask: bytes → decode → preprocess (request thread) → batched forward
(the model's inference thread) → postprocess (request thread), every stage timed."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from loguru import logger
from PIL import Image

from ai_service.observability import metrics
from ai_service.engine import DeadlineExceeded, DeviceOutOfMemory, Overloaded, engine_for
from ai_service.engine.batcher import Batcher, Ticket
from ai_service.server.cores import single_threaded
from ai_service.errors import ServiceError
from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.io import decode_image
from ai_service.models.base import ImageModel
from ai_service.models.registry import ModelRegistry


@dataclass
class Upload:
    """One uploaded image as received: its bytes and the client's name for it (display only)."""

    data: bytes
    filename: str = ""


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
    """Images that went through one preprocess call together and so share one postprocess call."""

    indices: list[int]
    options: dict[str, Any]
    tickets: list[Ticket] = field(default_factory=list)


def decode_uploads(model: ImageModel, uploads: Sequence[Upload], max_pixels: int
                   ) -> list[Image.Image | ImageDecodeError]:
    """Decode each upload at the size the model needs; a bad item becomes its error, not an exception."""
    decoded: list[Image.Image | ImageDecodeError] = []
    for upload in uploads:
        try:
            decoded.append(decode_image(upload.data, max_pixels=max_pixels, target_size=model.decode_size()))
        except ImageDecodeError as error:
            decoded.append(error)
    return decoded


def preprocess_groups(model: ImageModel, images: dict[int, Image.Image], options: dict[str, Any]
                      ) -> tuple[list[Group], list[torch.Tensor], dict[int, Exception]]:
    """One preprocess call for all images; if it fails, one call per image so only the bad one fails."""
    indices = list(images)
    try:
        batch = model.preprocess([images[i] for i in indices], options)
        if batch.shape[0] != len(indices):
            raise RuntimeError(f"preprocess returned {batch.shape[0]} samples for {len(indices)} images")
        return [Group(indices, options)], list(batch.unbind(0)), {}
    except Exception as error:  # noqa: BLE001 - isolate the image that broke preprocessing
        if len(indices) == 1:
            return [], [], {indices[0]: error}
    groups, samples, failures = [], [], {}
    for index in indices:
        own = dict(options)
        try:
            sample = model.preprocess([images[index]], own)[0]
        except Exception as error:  # noqa: BLE001
            failures[index] = error
            continue
        groups.append(Group([index], own))
        samples.append(sample)
    return groups, samples, failures


def merge_outputs(parts: Sequence[Any]) -> Any:
    """Per-image outputs (each with a batch dimension of 1) back into one batched output."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    if isinstance(first, list):
        return [item for part in parts for item in part]
    if isinstance(first, dict):
        return {key: merge_outputs([part[key] for part in parts]) for key in first}
    if isinstance(first, tuple):
        merged = [merge_outputs([part[i] for part in parts]) for i in range(len(first))]
        return type(first)(*merged) if hasattr(first, "_fields") else type(first)(merged)
    raise TypeError(f"cannot merge forward outputs of type {type(first).__name__}")


def error_entry(code: str, message: str, status: int) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, "status": status}


def predict(registry: ModelRegistry, model_name: str, uploads: Sequence[Upload], options: dict[str, Any],
            max_pixels: int) -> dict[str, Any]:
    """Run one model over the uploads; returns per-item results (or errors), the stage timings and the batch size.

    Raises ServiceError("overloaded", 503, Retry-After) when the model's queue is full and
    ServiceError("timeout", 504) when the request's deadline passes.
    """
    began = time.perf_counter()
    single_threaded()
    engine = engine_for(registry)
    deadline = began + engine.options.request_timeout_s
    timer = Timer()
    was_loaded = registry.entry(model_name).state == "loaded"
    with registry.using(model_name) as model:
        started = timer.add("load", began) if not was_loaded else began
        batcher = engine.batcher(model)
        name = model.info.name
        try:
            results, batch_size = _run(model, batcher, uploads, options, max_pixels, deadline, timer, started)
        except Overloaded as error:
            raise ServiceError("overloaded", f"The server is busy ({error}); retry in a moment.",
                           {"model": name}, headers={"Retry-After": "1"}) from None
        except DeadlineExceeded:
            metrics.record_items(name, "timeout", len(uploads))
            timeout = engine.options.request_timeout_s
            raise ServiceError("timeout", f"No result within the {timeout:g} s request deadline; the server is "
                           "overloaded or the model is too slow for it.", {"model": name,
                                                                                 "timeout_s": timeout}) from None
        except DeviceOutOfMemory:
            metrics.record_items(name, "oom", len(uploads))
            raise ServiceError("out_of_memory", "The model ran out of device memory for these images; retry in a "
                           "moment or send fewer or smaller images.", {"model": name},
                           headers={"Retry-After": "1"}) from None
    for outcome in ("ok", "invalid", "error"):
        metrics.record_items(name, outcome, sum(_outcome(result) == outcome for result in results))
    timer.set("total", (time.perf_counter() - began) * 1000.0)
    outcome = {"model": model.info.name, "version": model.info.version, "task": model.info.task,
               "results": results, "timing_ms": timer.stages}
    if batch_size:
        outcome["batch_size"] = batch_size
    return outcome


def _outcome(result: dict[str, Any]) -> str:
    """ok, invalid (the client's image) or error (ours), for the per-image metrics."""
    if "error" not in result:
        return "ok"
    return "invalid" if result["status"] < 500 else "error"


def _run(model: ImageModel, batcher: Batcher, uploads: Sequence[Upload], options: dict[str, Any], max_pixels: int,
         deadline: float, timer: Timer, started: float) -> tuple[list[dict[str, Any]], int]:
    """decode → preprocess → batched forward → postprocess for one request, inside its batcher arrival."""
    per_item: dict[int, dict[str, Any]] = {}
    with batcher.arrival(len(uploads)) as arrival:
        decoded = decode_uploads(model, uploads, max_pixels)
        started = timer.add("decode", started)
        images = {i: item for i, item in enumerate(decoded) if isinstance(item, Image.Image)}
        for index, item in enumerate(decoded):
            if isinstance(item, ImageDecodeError):
                per_item[index] = error_entry(item.code, item.message, item.status)
        groups: list[Group] = []
        if images:
            groups, samples, failures = preprocess_groups(model, images, options)
            started = timer.add("preprocess", started)
            for index, error in failures.items():
                logger.warning("model {} could not preprocess {}: {}", model.info.name, uploads[index].filename, error)
                per_item[index] = error_entry("invalid_image", f"The model could not prepare this image: {error}", 422)
            if time.perf_counter() > deadline:
                raise DeadlineExceeded("deadline passed while decoding")
            tickets = arrival.submit(samples, deadline, tags=[i for g in groups for i in g.indices])
            for group in groups:
                group.tickets, tickets = tickets[:len(group.indices)], tickets[len(group.indices):]
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
    failed = {index: ticket.error for index, ticket in zip(group.indices, group.tickets) if ticket.error is not None}
    entries: dict[int, dict[str, Any]] = {
        index: error_entry("internal_error", "The model failed on this image; the error has been logged.", 500)
        for index in failed}
    good = [(index, ticket) for index, ticket in zip(group.indices, group.tickets) if ticket.error is None]
    if not good:
        return entries
    try:
        produced = model.postprocess(merge_outputs([ticket.output for _, ticket in good]), group.options)
        if len(produced) != len(good):
            raise RuntimeError(f"postprocess returned {len(produced)} results for {len(good)} images")
    except Exception as error:  # noqa: BLE001 - a model bug becomes a logged 500 for these images only
        logger.opt(exception=error).error("model {} failed in postprocess", model.info.name)
        produced = [error_entry("internal_error", "The model failed on this image; the error has been logged.",
                                500)] * len(good)
    entries.update({index: result for (index, _), result in zip(good, produced)})
    return entries
