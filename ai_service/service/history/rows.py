"""History rows from predictions: begun on the request thread from what is already in hand (`pending_rows`),
finished where time is cheaper (`finish_row`: JSON-ready result, top-1, stored images). Interactive calls finish
them on the history writer's thread, bulk jobs in the chunk that wrote them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from ai_service.errors import ServiceError
from ai_service.service.upload import Caller, Upload
from ai_service.storage.schema import new_id, utcnow

#: Result keys that are columns of their own (or a link to the row), not part of the stored result.
NOT_RESULT = frozenset({"index", "filename", "width", "height", "mode", "history_id"})
#: Result keys whose images count as the output that is kept (history_images=outputs, job outputs).
OUTPUT_KEYS = ("image", "mask")
#: Every column a finished row has (executemany needs the same keys in every row).
ROW_DEFAULTS: dict[str, Any] = {
    "job_id": None,
    "error_code": None,
    "error_message": None,
    "result": None,
    "top1_label": None,
    "top1_score": None,
    "output_sha256": None,
    "input_stored": False,
    "http_status": 200,
}


class Store(Protocol):
    """Where kept images go: the history's BlobStore, or a job store (database or shared folder)."""

    def put(self, data: bytes, digest: str | None = None) -> str: ...


@dataclass
class PendingRow:
    """A row waiting to be finished: the columns known on the request thread, the raw result, the kept input."""

    row: dict[str, Any]
    result: dict[str, Any]
    input_bytes: bytes | None = None


def pending_rows(
    caller: Caller,
    model: tuple[str, str, str],
    uploads: Sequence[Upload | ServiceError],
    results: Sequence[dict[str, Any]],
    timing_ms: dict[str, float],
    batch_size: int,
    *,
    keep_inputs: bool = False,
    indexes: Sequence[int] | None = None,
) -> list[PendingRow]:
    """One row per input, numbered by the result's `index`, or by `indexes` (a job's items, a CLI run's images)."""
    now = utcnow()
    name, version, task = model
    indexes = indexes if indexes is not None else (caller.item_indexes or None)
    pending = []
    for position, (upload, result) in enumerate(zip(uploads, results)):
        data = upload.data if isinstance(upload, Upload) else None
        row = {
            "id": new_id(),
            "created_at": now,
            "request_id": caller.request_id[:64],
            "source": caller.source,
            "job_id": caller.job_id,
            "item_index": indexes[position] if indexes is not None else result.get("index", position),
            "model": name,
            "version": version,
            "task": task,
            "input_sha256": upload.sha256 if isinstance(upload, Upload) else None,
            "filename": (upload.filename if isinstance(upload, Upload) else "")[:255],
            "width": result.get("width"),
            "height": result.get("height"),
            "mode": result.get("mode"),
            "timing_ms": dict(timing_ms),  # the caller adds its encode stage to its own copy later
            "total_ms": timing_ms.get("total"),
            "batch_size": batch_size,
            "client": caller.client[:128],
        }
        pending.append(PendingRow(row, dict(result), data if keep_inputs else None))
    return pending


def failure_results(count: int, error: ServiceError) -> list[dict[str, Any]]:
    """The results of a call that failed as a whole (overloaded, timeout, out of memory): the same error each."""
    failed = {"error": error.body(), "status": error.status}
    return [{"index": index, **failed} for index in range(count)]


def finish_row(pending: PendingRow, store: Store | None) -> dict[str, Any]:
    """Status, the result as stored (images kept in `store` or summarized), top-1, the kept input."""
    row, result = {**ROW_DEFAULTS, **pending.row}, pending.result
    if pending.input_bytes is not None and store is not None:
        store.put(pending.input_bytes, row["input_sha256"])
        row["input_stored"] = True
    else:
        row["input_stored"] = False
    if "error" in result:
        error = result["error"]
        row.update(
            status="error",
            error_code=error.get("code"),
            error_message=error.get("message"),
            http_status=result.get("status", 500),
            result=None,
        )
        return row
    row.update(status="ok", error_code=None, error_message=None, http_status=200)
    stored: list[str] = []
    body = {key: value for key, value in result.items() if key not in NOT_RESULT}
    for key, value in body.items():  # images sit at the top (image, mask) or in detections (masks)
        if isinstance(value, Image.Image):
            body[key] = image_reference(value, key, store, stored)
        elif key == "detections" and isinstance(value, list):
            body[key] = [
                {k: image_reference(v, k, store, stored) if isinstance(v, Image.Image) else v for k, v in item.items()}
                if isinstance(item, dict)
                else item
                for item in value
            ]
    row["result"] = body
    row["output_sha256"] = stored[0] if stored else None
    row["top1_label"], row["top1_score"] = top1(result)
    return row


def image_reference(image: Image.Image, key: str, store: Store | None, stored: list[str]) -> dict[str, Any]:
    """An image in a result as {kind, width, height, mode[, sha256]}, stored as PNG when a store keeps outputs."""
    reference: dict[str, Any] = {"kind": "image", "width": image.width, "height": image.height, "mode": image.mode}
    if store is not None and key in OUTPUT_KEYS:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        reference["sha256"] = store.put(buffer.getvalue())
        stored.append(reference["sha256"])
    return reference


def top1(result: dict[str, Any]) -> tuple[str | None, float | None]:
    """The best label and score of a classification (predictions) or detection (detections) result."""
    for key in ("predictions", "detections"):
        items = result.get(key)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            best = max(items, key=lambda item: item.get("score") or 0.0)
            label = best.get("label")
            return (str(label)[:255] if label is not None else None), best.get("score")
    return None, None
