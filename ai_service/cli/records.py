"""One output record per input (jsonl, csv or parquet by the file's extension) and the image outputs beside them.

JSON lines are appended as results arrive, so an interrupted run keeps everything it finished; CSV and Parquet are
written once, at the end or on interrupt, from the records done (pandas). `--resume` reads any of the three back.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ai_service.errors import ERRORS

#: The columns of every output format, in order; `result` is the full /predict entry (JSON text in csv/parquet).
COLUMNS = (
    "path",
    "model",
    "status",
    "error_code",
    "error_message",
    "top1_label",
    "top1_score",
    "output",
    "history_id",
    "result",
)
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def output_format(out: str) -> str:
    """jsonl, csv or parquet from the --out file's extension (`-`: JSON lines on standard output)."""
    if out == "-":
        return "jsonl"
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {out}: the extension must be one of {', '.join(FORMATS)}")
    return fmt


def error_entry(index: int, name: str, code: str, message: str) -> dict[str, Any]:
    """A failed input's `result`, shaped like /predict's ItemError (status: what it would answer alone)."""
    return {
        "index": index,
        "filename": name,
        "status": ERRORS[code].status,
        "error": {"code": code, "message": message},
    }


def make_record(path: str, model: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The output record of one input from its result entry (top-1 as the history computes it)."""
    from ai_service.service.history.rows import top1

    error = entry.get("error") or {}
    label, score = (None, None) if error else top1(entry)
    return {
        "path": path,
        "model": model,
        "status": "error" if error else "ok",
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "top1_label": label,
        "top1_score": score,
        "output": entry.get("output"),
        "history_id": entry.get("history_id"),
        "result": entry,
    }


def retryable(record: dict[str, Any]) -> bool:
    """A failure that was not the input's fault (timeout, overloaded, a crash): --resume runs it again."""
    if record.get("status") == "ok":
        return False
    kind = ERRORS.get(str(record.get("error_code") or ""))
    return kind is None or kind.status >= 500 or kind.status == 429


def write_output(folder: Path, name: str, data: bytes, extension: str, suffix: str = "") -> str:
    """Write one output image as `folder/<input's relative name, new extension>`; returns that path."""
    relative = PurePosixPath(name)
    target = folder.joinpath(*relative.parent.parts, f"{relative.stem}{suffix}.{extension}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return str(target)


def read_records(out: Path, fmt: str) -> list[dict[str, Any]]:
    """The records an earlier run wrote (a torn last JSON line, from a killed run, is dropped)."""
    if not out.exists() or out.stat().st_size == 0:
        return []
    if fmt == "jsonl":
        records = []
        for line in out.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records
    import pandas as pd

    frame = pd.read_csv(out, dtype=str, keep_default_na=False) if fmt == "csv" else pd.read_parquet(out)
    records = []
    for row in frame.to_dict("records"):
        record = {column: (None if row.get(column) in ("", None) else row.get(column)) for column in COLUMNS}
        if isinstance(record["result"], str):
            record["result"] = json.loads(record["result"])
        if record["top1_score"] is not None:
            record["top1_score"] = float(record["top1_score"])
        records.append(record)
    return records


@dataclass
class RecordWriter:
    """Keeps the records of a run and writes them in the chosen format; one writer per --out."""

    out: str | None
    fmt: str = "jsonl"
    #: Records kept from an earlier run (--resume), written again first (csv/parquet) or left in place (jsonl).
    kept: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    _stream: IO[str] | None = None
    _rewrite: bool = False

    def open(self, rewrite: bool) -> None:
        """Choose how the output starts; nothing is touched before the first record (a run that fails at once, say
        on a wrong API key, leaves an earlier file as it was)."""
        self._rewrite = rewrite

    def _start(self) -> IO[str]:
        """JSON lines go after what --resume kept (rewritten first, through a temporary name: a torn last line or
        dropped retries must not stay in the way), else into a new file."""
        if self.out == "-":
            return sys.stdout
        assert self.out is not None
        target = Path(self.out)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self._rewrite:
            partial = target.with_name(target.name + ".partial")
            partial.write_text("".join(json.dumps(record, default=str) + "\n" for record in self.kept), "utf-8")
            os.replace(partial, target)
        return open(target, "a" if self._rewrite else "w", encoding="utf-8")  # noqa: SIM115

    def add(self, records: list[dict[str, Any]]) -> None:
        """Keep finished records; JSON lines reach the file at once (flushed, so Ctrl-C or a crash keeps them)."""
        self.records += records
        if self.out is not None and self.fmt == "jsonl" and records:
            if self._stream is None:
                self._stream = self._start()
            self._stream.write("".join(json.dumps(record, default=str) + "\n" for record in records))
            self._stream.flush()

    def close(self) -> None:
        """Finish the file: CSV and Parquet are written now (through a temporary name) from every record done."""
        if self._stream is not None:
            if self._stream is not sys.stdout:
                self._stream.close()
            self._stream = None
            return
        if self.out is None or self.fmt == "jsonl" or not self.records:
            return
        import pandas as pd

        rows = [{**record, "result": json.dumps(record["result"], default=str)} for record in self.kept + self.records]
        frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype(
            {column: "string" for column in COLUMNS if column != "top1_score"} | {"top1_score": "float64"}
        )
        target = Path(self.out)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        if self.fmt == "csv":
            frame.to_csv(partial, index=False)
        else:
            frame.to_parquet(partial, index=False)
        os.replace(partial, target)
