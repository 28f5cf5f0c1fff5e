"""`ai-service predict --server URL`: batches POSTed to /api/v1/predict over a few connections.

A batch the server finds too big (too_many_files, payload_too_large) is split in halves and sent again, so the
client needs to know neither the server's max_files nor its body limit; 429/503 are retried by the client.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ai_service.cli.inputs import Item
from ai_service.cli.local import BatchOutcome
from ai_service.cli.records import error_entry, write_output
from ai_service.client import Client, ServiceError, decode_data_url

#: Whole-request errors that every other batch would hit too: the run stops instead.
FATAL = frozenset(
    {"unknown_model", "validation_error", "unauthorized", "missing_api_key", "invalid_api_key", "forbidden"}
)
TOO_BIG = frozenset({"too_many_files", "payload_too_large"})
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def named(data: bytes, name: str) -> io.BytesIO:
    """The bytes as a file object with the input's name, which the client sends as the part's filename."""
    stream = io.BytesIO(data)
    stream.name = name
    return stream


class RemoteRunner:
    """Sends batches to one server; thread-safe, one instance shared by the connection threads."""

    def __init__(
        self, server: str, api_key: str | None, model: str | None, options: dict[str, Any], outputs: str | None
    ) -> None:
        self.client = Client(server, api_key=api_key, timeout=300.0, retries=5)
        self.model, self.options, self.outputs = model, options, outputs

    def run_batch(self, items: list[Item]) -> BatchOutcome:
        """Predict one batch on the server; unreadable files never leave this machine."""
        readable: list[tuple[Item, bytes]] = []
        unreadable: dict[int, dict[str, Any]] = {}
        for item in items:
            try:
                readable.append((item, Path(item.path).read_bytes()))
            except OSError as error:
                message = f"Cannot read {item.path}: {error.strerror or error}"
                unreadable[item.index] = error_entry(item.index, item.name, "unprocessable", message)
        outcome = self._send(readable) if readable else BatchOutcome()
        if outcome.fatal:
            return outcome
        sent = iter(outcome.entries)
        entries = [unreadable.get(item.index) or next(sent) for item in items]
        return BatchOutcome(outcome.model, entries)

    def _send(self, batch: list[tuple[Item, bytes]]) -> BatchOutcome:
        try:
            files = [named(data, item.name) for item, data in batch]  # the server's history keeps the file names
            answer = self.client.predict_many(files, model=self.model, **self.options).model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        except ServiceError as error:
            if error.code in TOO_BIG and len(batch) > 1:
                first, second = self._send(batch[: len(batch) // 2]), self._send(batch[len(batch) // 2 :])
                fatal = first.fatal or second.fatal
                return BatchOutcome(first.model or second.model, first.entries + second.entries, fatal)
            if error.code in FATAL or error.status == 0:
                return BatchOutcome(fatal={"code": error.code, "message": error.message})
            failure = {"status": error.status, "error": {"code": error.code, "message": error.message}}
            entries = [{"index": item.index, "filename": item.name, **failure} for item, _ in batch]
            return BatchOutcome("", entries)
        model = f"{answer['model']}@{answer['version']}"
        return BatchOutcome(model, [self._finish(entry, item) for entry, (item, _) in zip(answer["results"], batch)])

    def _finish(self, entry: dict[str, Any], item: Item) -> dict[str, Any]:
        """Numbered in the run, named after the file; data-URL outputs written to --outputs when given."""
        entry = {**entry, "index": item.index, "filename": item.name}
        if self.outputs and "error" not in entry:
            for key, suffix in (("image", ""), ("mask", ".mask")):
                url = entry.get(key)
                if isinstance(url, str) and url.startswith("data:"):
                    mime = url[5:].split(";", 1)[0]
                    extension = EXTENSIONS.get(mime, mime.rpartition("/")[2] or "bin")
                    written = write_output(Path(self.outputs), item.target, decode_data_url(url), extension, suffix)
                    entry[key] = written
                    entry.setdefault("output", written)
        return entry
