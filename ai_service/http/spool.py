"""Bulk job uploads put every part in one temporary file per request, not one in RAM or its own open file each."""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, Any

from flask import Request

#: Where bulk jobs are posted (relative to the app's script root); thousands of `file` parts are a real case there.
SPOOLED_PATHS = frozenset({"/api/v1/jobs"})


class SharedSpool:
    """One temporary file that the parts of a request are appended to one after another; closed with its last
    window, or by the request when it ends."""

    def __init__(self) -> None:
        self.file: IO[bytes] | None = tempfile.TemporaryFile("w+b", buffering=0)
        #: Bytes written so far: where the next part starts.
        self.end = 0
        #: The window that is being written (werkzeug writes a part to its end before it starts the next).
        self.writer: SpoolWindow | None = None
        self.windows = 0

    @property
    def closed(self) -> bool:
        return self.file is None

    def window(self) -> SpoolWindow:
        """A new part, starting at the file's end; the part before it is finished."""
        window = SpoolWindow(self, self.end)
        self.writer = window
        self.windows += 1
        return window

    def fileno(self) -> int:
        if self.file is None:
            raise ValueError("I/O operation on a closed upload spool")
        return self.file.fileno()

    def append(self, window: SpoolWindow, data: Any) -> int:
        if window is not self.writer:
            raise io.UnsupportedOperation("only the part being received can be written")
        view = memoryview(data).cast("B")
        fd, written = self.fileno(), 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], self.end + written)
        self.end += written
        return written

    def read(self, offset: int, size: int) -> bytes:
        fd, chunks, got = self.fileno(), [], 0
        while got < size:
            chunk = os.pread(fd, size - got, offset + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def release(self, window: SpoolWindow) -> None:
        """A window was closed: the last one closes the file."""
        if self.writer is window:
            self.writer = None
        self.windows -= 1
        if self.windows <= 0:
            self.close()

    def close(self) -> None:
        file, self.file, self.writer = self.file, None, None
        if file is not None:
            file.close()


class SpoolWindow(io.RawIOBase):
    """One part's bytes in the shared spool: appended while werkzeug receives it, then read at its own position."""

    def __init__(self, spool: SharedSpool, start: int) -> None:
        super().__init__()
        self._spool = spool
        self._start = start
        self._length = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return not self.closed and self._spool.writer is self

    def write(self, data: Any) -> int:
        self._check_open()
        if self._pos != self._length:
            raise io.UnsupportedOperation("a part is only appended to")
        written = self._spool.append(self, data)
        self._length += written
        self._pos = self._length
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence!r})")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        left = self._length - self._pos
        count = left if size is None or size < 0 else min(size, left)
        if count <= 0:
            return b""
        data = self._spool.read(self._start + self._pos, count)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._spool.release(self)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed file")


class SpoolingRequest(Request):
    """Flask's request, except that the file parts of a bulk job share one temporary file (see SharedSpool)."""

    _part_spool: SharedSpool | None = None

    def spools_parts(self) -> bool:
        """`self.path` is relative to the script root, so a prefix the app is mounted under does not matter."""
        return self.path in SPOOLED_PATHS

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if not self.spools_parts():
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        if self._part_spool is None or self._part_spool.closed:
            self._part_spool = SharedSpool()
        return self._part_spool.window()  # type: ignore[return-value]

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._part_spool is not None:
                self._part_spool.close()
