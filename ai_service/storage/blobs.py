"""Content-addressed file store: bytes saved once under their sha256 (ab/cd/abcd…), however often they recur."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    """Immutable files named by their content; writes are atomic, so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        #: The folder that holds the two-level fan-out of files.
        self.root = root

    def path(self, digest: str) -> Path:
        """Where the blob with this sha256 lives (ValueError for anything but 64 lowercase hex digits)."""
        if not SHA256.fullmatch(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store the bytes unless an identical blob is already there; returns their sha256."""
        digest = digest or hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return digest

    def put_many(self, blobs: dict[str, bytes]) -> None:
        """Store several blobs by their sha256 (a job's inputs at submit)."""
        for digest, data in blobs.items():
            self.put(data, digest)

    def get(self, digest: str) -> bytes | None:
        """The blob's bytes, or None when it is not stored."""
        try:
            return self.path(digest).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self, older_than: float | None = None) -> Iterator[str]:
        """Every stored sha256, optionally only those written before a time.time() moment."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("??/??/*"):
            if SHA256.fullmatch(path.name) and (older_than is None or path.stat().st_mtime < older_than):
                yield path.name
