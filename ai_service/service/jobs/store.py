"""Where a job's input bytes and output images live for every process that runs its chunks: the database (table
`blobs`, the default: every machine that reaches the database reads it) or a folder (a shared mount).

Putting bytes that are already stored refreshes their time (created_at, or the file's mtime): retention removes
only blobs older than its cutoff that nothing names, so bytes a job is being submitted with right now are never
removed from under it, even when an old job had the same image.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, Insert, select, text
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ai_service.errors import ServiceError
from ai_service.settings import Settings
from ai_service.storage.blobs import BlobStore
from ai_service.storage.database import backend
from ai_service.storage.schema import Blob, utcnow

#: Bytes per INSERT transaction when a job's inputs are stored (keeps MySQL packets and memory bounded).
BATCH_BYTES = 8 * 1024 * 1024
#: Bytes the MySQL driver sends escaped (two bytes each) inside a statement.
ESCAPED = [bytes([code]) for code in b"\x00'\"\\\n\r\x1a"]


class JobStore(Protocol):
    """Bytes by sha256, written once however often they are put."""

    def put(self, data: bytes, digest: str | None = None) -> str: ...

    def put_many(self, blobs: dict[str, bytes]) -> None: ...

    def get(self, digest: str) -> bytes | None: ...


class DatabaseBlobs:
    """The job store in the database: no shared folder to set up, at the cost of database space."""

    def __init__(self, engine: Engine) -> None:
        #: The jobs' engine (its own pool, so job traffic never waits for the history writer).
        self.engine = engine
        self._insert = insert_refreshing(engine)
        self._packet: int | None = None

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store the bytes unless they are there; returns their sha256."""
        digest = digest or hashlib.sha256(data).hexdigest()
        self.put_many({digest: data})
        return digest

    def put_many(self, blobs: dict[str, bytes]) -> None:
        """Store blobs in transactions of about BATCH_BYTES; a digest already stored only has its time refreshed."""
        self._check_sizes(blobs)
        now, batch, size = utcnow(), [], 0
        for digest, data in blobs.items():
            batch.append({"sha256": digest, "data": data, "created_at": now})
            size += len(data)
            if size >= BATCH_BYTES:
                self._write(batch)
                batch, size = [], 0
        if batch:
            self._write(batch)

    def _write(self, rows: list[dict[str, object]]) -> None:
        with self.engine.begin() as connection:
            for row in rows:  # one row per statement: a multi-row INSERT of images could pass max_allowed_packet
                connection.execute(self._insert, [row])

    def _check_sizes(self, blobs: dict[str, bytes]) -> None:
        """MySQL/MariaDB refuse a statement longer than max_allowed_packet: say so (413) before writing anything."""
        if backend(self.engine) != "mysql" or max(map(len, blobs.values()), default=0) < 1024 * 1024:
            return
        largest = max(len(data) + sum(data.count(byte) for byte in ESCAPED) for data in blobs.values())
        if self._packet is None:
            with self.engine.connect() as connection:
                self._packet = int(connection.scalar(text("SELECT @@max_allowed_packet")) or 0)
        if self._packet and largest + 1024 > self._packet:
            raise ServiceError(
                "payload_too_large",
                f"An input of {largest} bytes does not fit the database's max_allowed_packet ({self._packet} bytes): "
                "raise it on the server, or keep job inputs in a folder (AI_SERVICE_JOBS_STORE).",
                {"bytes": largest, "max_allowed_packet": self._packet},
            )

    def get(self, digest: str) -> bytes | None:
        """The stored bytes, or None."""
        with self.engine.connect() as connection:
            return connection.scalar(select(Blob.data).where(Blob.sha256 == digest))


def insert_refreshing(engine: Engine) -> Insert:
    """INSERT of a blob that, when its sha256 is there already, sets created_at to now instead (the bytes stay)."""
    table = Blob.__table__
    kind = backend(engine)
    if kind == "mysql":
        mysql = mysql_insert(table)
        return mysql.on_duplicate_key_update(created_at=mysql.inserted.created_at)
    statement = postgresql_insert(table) if kind == "postgresql" else sqlite_insert(table)
    return statement.on_conflict_do_update(
        index_elements=["sha256"], set_={"created_at": statement.excluded.created_at}
    )


class FolderBlobs(BlobStore):
    """The job store in a folder: a put of bytes already there refreshes the file's time, and removal is safe
    against such a put running at the same moment."""

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store the bytes, or refresh the time of the identical file already stored; returns their sha256."""
        digest = digest or hashlib.sha256(data).hexdigest()
        try:
            os.utime(self.path(digest))
        except FileNotFoundError:
            return super().put(data, digest)
        except PermissionError:
            pass  # another user's file: stored all the same, only its time stays
        return digest

    def remove(self, digest: str, older_than: float) -> bool:
        """Delete the file if it is still older than `older_than` (a time.time() moment); True when deleted.

        The file is first renamed aside, so a concurrent put either refreshed it before (its time is new: it is
        put back) or finds it gone and writes it again."""
        path = self.path(digest)
        aside = path.with_name(f".del-{os.getpid()}-{threading.get_ident()}-{digest}")
        try:
            os.replace(path, aside)
            if aside.stat().st_mtime >= older_than:
                os.replace(aside, path)  # identical bytes, whichever copy wins
                return False
        except FileNotFoundError:
            return False
        aside.unlink(missing_ok=True)
        return True

    def leftovers(self, older_than: float) -> int:
        """Remove files a crashed put or removal left behind (.tmp-*, .del-*) before `older_than`."""
        removed = 0
        if self.root.is_dir():
            for path in [*self.root.glob("??/??/.tmp-*"), *self.root.glob("??/??/.del-*")]:
                try:
                    if path.stat().st_mtime < older_than:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


def open_store(settings: Settings, engine: Engine) -> JobStore:
    """The database unless `jobs_store` names a folder (relative to the home when not absolute)."""
    if not settings.jobs.store:
        return DatabaseBlobs(engine)
    folder = Path(settings.jobs.store).expanduser()
    return FolderBlobs(folder if folder.is_absolute() else settings.home / folder)
