"""One rotating log file for every process gunicorn forks, without pickling each record.

Every process formats its own records (text or JSON) and writes them into one pipe, in frames of at
most PIPE_BUF bytes so that each `os.write` is atomic and frames of different workers never mix; a
thread in the process that configured logging reassembles long records per writer and hands them,
a batch per read, to the only file sink, which alone rotates, retains and compresses the file.
loguru's `enqueue=True` gives the same guarantee by pickling every record into a multiprocessing
queue under a cross-process lock; on a tiny model that cost ~0.35 ms of CPU per access line
(bench/results/serving.md), about a tenth of the whole request. When the console is not a terminal
(gunicorn under systemd, Docker), it shows the same lines as the file, so the reader writes each
batch there too and workers skip their own console sink.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

#: extra key of a record that carries already formatted lines from the pipe to the file sink.
RELAYED = "relayed_lines"
#: extra key naming the relay whose file should take those lines (one relay's lines never reach another's file).
RELAY = "relay"
#: writer pid (or flush token), payload length, flags, level number.
FRAME = struct.Struct("<IHBB")
PAYLOAD_MAX = select.PIPE_BUF - FRAME.size
LAST, MARKER = 1, 2
#: The reader sleeps this long after each read. At 64 KiB of pipe that still carries ~10,000 lines/s,
#: and it turns ~40 µs of file-sink work per line into one write per batch.
BATCH_WINDOW_S = 0.02


def not_relayed(record: dict) -> bool:
    return RELAYED not in record["extra"]


class FileRelay:
    """The pipe, its reader thread, and the loguru sinks on both ends (see the module docstring)."""

    def __init__(
        self, path: Path, *, level: str, format: str, serialize: bool, echo_fd: int | None = None, **file_options: Any
    ) -> None:
        self.owner = os.getpid()
        self.level_no = logger.level(level).no
        self._echo_fd = echo_fd  # console lines ride along: one write per batch instead of one per line
        self._read_fd, self._write_fd = os.pipe()
        self._markers: dict[int, threading.Event] = {}
        # enqueue=True on the file end only so that a forked child never closes (or compresses) the file.
        self._sink_ids = [
            logger.add(
                path,
                level=0,
                format=f"{{extra[{RELAYED}]}}",
                filter=self._is_mine,
                serialize=False,
                enqueue=True,
                **file_options,
            ),
            logger.add(
                self._write,
                level=level,
                format=format,
                filter=not_relayed,
                serialize=serialize,
                backtrace=False,
                diagnose=False,
                enqueue=False,
            ),
        ]
        self._reader = threading.Thread(target=self._read_loop, name="log-relay", daemon=True)
        self._reader.start()

    def _is_mine(self, record: dict) -> bool:
        return record["extra"].get(RELAY) == id(self)

    def _write(self, message: str) -> None:
        """Sink of every process: the formatted record into the pipe, in atomic frames."""
        self.write_line(message, message.record["level"].no)  # type: ignore[attr-defined]

    def write_line(self, line: str, level_no: int) -> None:
        """A line already formatted like the file's (newline included) into the pipe, in atomic frames."""
        data = line.encode("utf-8", "replace")
        pid, level = os.getpid() & 0xFFFFFFFF, min(255, level_no)
        for start in range(0, max(1, len(data)), PAYLOAD_MAX):
            chunk = data[start : start + PAYLOAD_MAX]
            flags = LAST if start + PAYLOAD_MAX >= len(data) else 0
            os.write(self._write_fd, FRAME.pack(pid, len(chunk), flags, level) + chunk)

    def _read_loop(self) -> None:
        """Owner's thread: frames → whole records → one file write per pipe read."""
        parts: dict[int, list[bytes]] = {}
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                os.close(self._read_fd)
                return
            pending += chunk
            done, level, offset, flushed = [], 0, 0, []
            while len(pending) - offset >= FRAME.size:
                writer, length, flags, frame_level = FRAME.unpack_from(pending, offset)
                end = offset + FRAME.size + length
                if end > len(pending):
                    break
                if flags & MARKER:
                    flushed.append(writer)
                else:
                    parts.setdefault(writer, []).append(pending[offset + FRAME.size : end])
                    if flags & LAST:
                        done.extend(parts.pop(writer))
                        level = max(level, frame_level)
                offset = end
            pending = pending[offset:]
            if not flushed:
                time.sleep(BATCH_WINDOW_S)  # let lines gather: one file write per batch, not per line
            if done:  # whole records only: their chunks decode together
                data = b"".join(done)
                self._echo(data)
                text = data[:-1] if data.endswith(b"\n") else data  # the file sink's format adds it back
                logger.bind(**{RELAYED: text.decode("utf-8", "replace"), RELAY: id(self)}).log(max(level, 1), "")
            for token in flushed:
                if (marker := self._markers.pop(token, None)) is not None:
                    marker.set()

    def _echo(self, data: bytes) -> None:
        """The same lines on the console (fd 2 itself: a replaced sys.stderr object may be closed by now)."""
        if self._echo_fd is None:
            return
        try:
            os.write(self._echo_fd, data)
        except OSError:
            pass  # a closed console must not stop the file

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every line written so far by this process is in the file (tests, shutdown)."""
        if os.getpid() != self.owner or not self._reader.is_alive():
            return
        marker = threading.Event()
        token = id(marker) & 0xFFFFFFFF
        self._markers[token] = marker
        os.write(self._write_fd, FRAME.pack(token, 0, MARKER, 0))
        marker.wait(timeout)
        logger.complete()

    def close(self) -> None:
        """Remove both sinks and stop the reader (it ends once every writer's end is closed)."""
        self.flush()
        for sink_id in self._sink_ids:
            try:
                logger.remove(sink_id)
            except ValueError:
                pass
        os.close(self._write_fd)
        if os.getpid() == self.owner:
            self._reader.join(2.0)
