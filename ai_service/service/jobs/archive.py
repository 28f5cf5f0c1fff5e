"""A job's upload turned into items before any work is queued: archives are hostile until every member is checked.

Zip and tar (plain, gzip, bzip2, xz) are told apart by their bytes, never by the file name. Each refusal is a
ServiceError naming the setting, the member and the value: a member larger than AI_SERVICE_JOBS_MAX_MEMBER_MB, more
than AI_SERVICE_JOBS_MAX_UNPACKED_MB in all or a member expanding more than AI_SERVICE_JOBS_MAX_RATIO:1 (zip bombs;
checked on the headers first and again on the bytes actually read, since headers can lie), more than
AI_SERVICE_JOBS_MAX_ITEMS images or more than AI_SERVICE_JOBS_MAX_UPLOAD_MB uploaded, member names
that climb out (`..`), are absolute (`/x`, `C:\\x`, backslashes), symlinks, hard links, devices and fifos, nested
archives, encrypted members, and a corrupt or unknown archive. Directories and OS junk (`__MACOSX/`, `.DS_Store`,
`Thumbs.db`, `._*`) are skipped silently. A member that is not an image is kept as an item with its error, so the
job runs the others. Items keep archive order (zip: its central directory, tar: the stream), which is the order the
person's tool wrote, and their path inside the archive.

Memory stays bounded whatever the archive holds: the upload is read twice from its (spooled to disk) file, first
to check everything while decompressing and keeping nothing, then member by member as the items are iterated, so
only one member's bytes are held at a time.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from ai_service.errors import ServiceError
from ai_service.imaging.errors import ImageDecodeError
from ai_service.imaging.io import sniff_format
from ai_service.service.upload import Upload
from ai_service.settings import JobsSettings

MB = 1024 * 1024
#: Members smaller than this are never refused for their ratio (tar headers and flat BMPs compress very well,
#: and a small member costs little whatever it expands to).
RATIO_FLOOR = 1 * MB
#: Entries of any kind (directories and OS junk too) beyond this many times `max_items` are refused, so a listing
#: of empty entries cannot exhaust memory either.
ENTRY_FACTOR = 2
ENTRY_SLACK = 1000
CHUNK = 1 * MB
#: Bytes of a member kept by the checking pass: enough to tell an image format (SVG needs 4 KiB) or a nested archive.
SNIFF_BYTES = 8192
#: A one-way upload is copied to a temporary file; this much of it may stay in memory.
SPOOL_MEMORY = 1 * MB
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
NESTED_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz", ".tbz2", ".xz", ".txz", ".zst", ".7z", ".rar")
#: Magic numbers of archives and compressed streams (a nested archive is refused whatever its name).
ARCHIVE_MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!\x1a\x07": "rar",
    b"\x28\xb5\x2f\xfd": "zstd",
}
OPENERS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    "bzip2": lambda raw: bz2.BZ2File(raw, "rb"),
    "xz": lambda raw: lzma.LZMAFile(raw, "rb"),
}
DRIVE = re.compile(r"^[A-Za-z]:")
#: A tar member's header and padding; extended headers (long names, pax) past MAX_TAR_HEADER are refused.
TAR_OVERHEAD = 1024
MAX_TAR_HEADER = 1 * MB
EXTENDED_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, b"X")


@dataclass
class JobItem:
    """One input of a job: its path (the archive member or file name) and its bytes, or why it cannot run."""

    path: str
    data: bytes | None = None
    error: ServiceError | None = None


class JobItems:
    """A job's items made one at a time when iterated (each iteration reads the upload again), counted up front."""

    def __init__(self, count: int, make: Callable[[], Iterator[JobItem]]) -> None:
        self.count, self.make = count, make

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[JobItem]:
        return self.make()


def items_from_archive(stream: BinaryIO, filename: str, limits: JobsSettings) -> JobItems:
    """Every image of a zip or tar upload, in archive order; raises a 4xx ServiceError for an archive to refuse.

    The whole archive is checked here (nothing kept); iterating the result reads it again one member at a time, so
    `stream` must stay open until then (a one-way stream is copied to a temporary file first)."""
    size = stream_size(stream)
    if size is not None:
        check_upload(size, limits, f"The archive {filename!r}")
    else:
        stream = spooled(stream, limits, filename)
    head = stream.read(512)
    stream.seek(0)
    kind = archive_kind(head)
    if kind not in OPENERS and kind not in ("zip", "tar"):
        named = f" ({kind})" if kind else ""
        raise ServiceError(
            "invalid_archive",
            f"{filename or 'The upload'!r} is not a zip or tar archive{named}; send .zip, .tar, .tar.gz/.tgz, "
            ".tar.bz2 or .tar.xz.",
            {"archive": filename, "magic": head[:8].hex()},
        )

    def reader() -> ZipReader | TarReader:
        stream.seek(0)
        return ZipReader(stream, limits) if kind == "zip" else TarReader(stream, kind, limits)

    count = reader().scan()
    return JobItems(count, lambda: reader().items())


def items_from_uploads(uploads: Sequence[Upload | ServiceError], limits: JobsSettings | None = None) -> list[JobItem]:
    """Many `file` parts: one item each, in request order, named by the client's file name (made relative).

    `limits` (settings.jobs): item count, total and per-file bytes; None when the caller has checked them."""
    return items_from_parts(uploads, limits, "file")


def items_from_files(files: Sequence[tuple[str, BinaryIO]], limits: JobsSettings) -> JobItems:
    """`file` parts as (client file name, stream): sizes checked from the streams, bytes read one file at a time."""
    if len(files) > limits.max_items:
        check_sizes([], limits, len(files))
    seekable = [
        (name, stream if stream_size(stream) is not None else spooled(stream, limits, name)) for name, stream in files
    ]
    check_sizes([(name, stream_size(stream) or 0) for name, stream in seekable], limits)

    def make() -> Iterator[JobItem]:
        for index, (name, stream) in enumerate(seekable):
            stream.seek(0)
            item = image_item(relative_name(name) or f"file/{index}", stream.read())
            yield item
            del item  # not held while the next file is read

    return JobItems(len(files), make)


def items_from_json(
    images: Sequence[Upload | ServiceError | bytes], limits: JobsSettings | None = None
) -> list[JobItem]:
    """JSON `images`, decoded by the API (base64 / data: URLs; a bad one is its ServiceError): `images/<index>`."""
    parts = [Upload(item, f"images/{index}") if isinstance(item, bytes) else item for index, item in enumerate(images)]
    return items_from_parts(parts, limits, "images")


def items_from_parts(parts: Sequence[Upload | ServiceError], limits: JobsSettings | None, kind: str) -> list[JobItem]:
    """Uploaded images (not archives): the job's limits on the whole, then a per-item format check."""
    if limits is not None:
        check_parts(parts, limits)
    items = []
    for index, part in enumerate(parts):
        if isinstance(part, ServiceError):
            items.append(JobItem(f"{kind}/{index}", error=part))
        else:
            items.append(image_item(relative_name(part.filename) or f"{kind}/{index}", part.data))
    return items


def check_parts(parts: Sequence[Upload | ServiceError], limits: JobsSettings) -> None:
    """Item count, total bytes and bytes per image of uploaded images."""
    sizes = [(part.filename, len(part.data)) for part in parts if isinstance(part, Upload)]
    check_sizes(sizes, limits, len(parts))


def check_sizes(sizes: Sequence[tuple[str, int]], limits: JobsSettings, count: int | None = None) -> None:
    """Item count, total bytes and bytes per image, from (file name, size) of each image."""
    count = len(sizes) if count is None else count
    if count > limits.max_items:
        raise ServiceError(
            "too_many_files",
            f"{count} images in one job; the limit is {limits.max_items} (AI_SERVICE_JOBS_MAX_ITEMS).",
            {"setting": "AI_SERVICE_JOBS_MAX_ITEMS", "value": count, "limit": limits.max_items},
        )
    check_upload(sum(size for _, size in sizes), limits, "The images")
    limit = limits.max_member_mb * MB
    for filename, size in sizes:
        if size > limit:
            raise ServiceError(
                "payload_too_large",
                f"{filename or 'An image'!r} is {size / MB:.1f} MB; the limit is "
                f"{limits.max_member_mb:g} MB per image (AI_SERVICE_JOBS_MAX_MEMBER_MB).",
                {"setting": "AI_SERVICE_JOBS_MAX_MEMBER_MB", "member": filename, "value": size, "limit": int(limit)},
            )


def image_item(path: str, data: bytes) -> JobItem:
    """The item of one file: its bytes when they are an image format we read, else its per-item error."""
    try:
        sniff_format(data)
    except ImageDecodeError as error:
        return JobItem(path, error=error)
    return JobItem(path, data)


def member_item(path: str, data: bytes) -> JobItem:
    """An archive member's item; a member that is not an image but an archive refuses the whole upload."""
    item = image_item(path, data)
    if item.error is not None:
        check_nested(path, data)
    return item


def relative_name(name: str) -> str:
    """A client's file name as a relative path for display (no drive, no root, no `..`): never used on a disk."""
    parts = DRIVE.sub("", name.replace("\\", "/")).split("/")
    return "/".join(part for part in parts if part not in ("", ".", ".."))


# -- limits and errors ----------------------------------------------------------------------------------------


def stream_size(stream: IO[bytes]) -> int | None:
    """Bytes in a seekable stream, which is left at its start (an upload is a whole file); None if it cannot seek."""
    try:
        if not stream.seekable():
            return None
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
    except (OSError, ValueError, AttributeError):
        return None
    return size


def spooled(stream: IO[bytes], limits: JobsSettings, filename: str) -> IO[bytes]:
    """A seekable copy of a one-way stream (zip needs its end first), refused past the upload limit."""
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        check_upload(total, limits, f"The archive {filename!r}")
        copy.write(chunk)
    copy.seek(0)
    return copy


def check_upload(size: int, limits: JobsSettings, what: str) -> None:
    limit = limits.max_upload_mb * MB
    if size > limit:
        raise ServiceError(
            "payload_too_large",
            f"{what} is {size / MB:.1f} MB; the limit is {limits.max_upload_mb:g} MB per job "
            "(AI_SERVICE_JOBS_MAX_UPLOAD_MB).",
            {"setting": "AI_SERVICE_JOBS_MAX_UPLOAD_MB", "value": size, "limit": int(limit)},
        )


def too_large(setting: str, member: str, value: float, limit: float, verb: str) -> ServiceError:
    """archive_too_large for a size limit (MB in the message, bytes in the details)."""
    what = f"Member {member!r}" if member else "The archive"
    return ServiceError(
        "archive_too_large",
        f"{what} {verb} {value / MB:.1f} MB uncompressed; the limit is {limit / MB:g} MB ({setting}).",
        {"setting": setting, "member": member, "value": int(value), "limit": int(limit)},
    )


def unsafe(member: str, why: str) -> ServiceError:
    return ServiceError("unsafe_archive", f"Member {member!r} is refused: {why}.", {"member": member, "reason": why})


def corrupt(member: str, error: BaseException | str) -> ServiceError:
    """invalid_archive for bytes the readers could not make sense of (damaged, truncated, unreadable method)."""
    where = f" (at or after member {member!r})" if member else ""
    return ServiceError("invalid_archive", f"The archive is corrupt or truncated{where}: {error}", {"member": member})


def archive_kind(head: bytes) -> str:
    """zip, tar, gzip, bzip2, xz (compressed tars), another archive's name, or "" for unknown bytes."""
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    for magic, kind in ARCHIVE_MAGIC.items():
        if head.startswith(magic):
            return kind
    if len(head) >= 512 and is_tar_header(head):
        return "tar"  # a pre-POSIX (v7) tar: no magic, only a valid header checksum
    return ""


def is_tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "replace")
    except tarfile.TarError:
        return False
    return True


def check_name(name: str) -> str:
    """The member's path, refused when it could escape a folder it were unpacked into; "" for junk to skip."""
    if not name or "\x00" in name:
        raise unsafe(name, "an empty name or one with a NUL byte")
    if "\\" in name or DRIVE.match(name):
        raise unsafe(name, "a Windows path (backslash or drive letter)")
    if name.startswith("/"):
        raise unsafe(name, "an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise unsafe(name, "a path that climbs out of the archive (..)")
    if not parts or parts[0] == "__MACOSX" or parts[-1].lower() in JUNK_NAMES or parts[-1].startswith("._"):
        return ""
    return "/".join(parts)


def check_nested(path: str, data: bytes | None = None) -> None:
    """Archives inside the archive are not unpacked (recursion is how bombs multiply)."""
    kind = archive_kind(data[:512]) if data else ""
    if path.lower().endswith(NESTED_SUFFIXES) or kind:
        raise unsafe(path, f"a nested archive{f' ({kind})' if kind else ''}; put the images in the archive itself")


class Budget:
    """Counts items and unpacked bytes across members: the limits hold on what is read, not what headers say."""

    def __init__(self, limits: JobsSettings) -> None:
        self.limits = limits
        self.member_limit = limits.max_member_mb * MB
        self.total_limit = limits.max_unpacked_mb * MB
        self.items = 0
        self.entries = 0
        self.unpacked = 0

    def entry(self, member: str) -> None:
        self.entries += 1
        if self.entries > ENTRY_FACTOR * self.limits.max_items + ENTRY_SLACK:
            raise ServiceError(
                "too_many_files",
                f"The archive has more than {self.entries - 1} entries (directories and junk included); the limit "
                f"is {ENTRY_FACTOR} x AI_SERVICE_JOBS_MAX_ITEMS + {ENTRY_SLACK}.",
                {"setting": "AI_SERVICE_JOBS_MAX_ITEMS", "member": member, "value": self.entries},
            )

    def item(self, member: str) -> None:
        self.items += 1
        if self.items > self.limits.max_items:
            raise ServiceError(
                "too_many_files",
                f"The archive has more than {self.limits.max_items} images (AI_SERVICE_JOBS_MAX_ITEMS); "
                f"{member!r} is one too many.",
                {
                    "setting": "AI_SERVICE_JOBS_MAX_ITEMS",
                    "member": member,
                    "value": self.items,
                    "limit": self.limits.max_items,
                },
            )

    def declared(self, member: str, size: int, compressed: int | None = None) -> None:
        """A header's claims, checked before a byte of the member is decompressed."""
        if size > self.member_limit:
            raise too_large("AI_SERVICE_JOBS_MAX_MEMBER_MB", member, size, self.member_limit, "declares")
        if compressed is not None:
            self.ratio(member, size, compressed)

    def ratio(self, member: str, size: int, compressed: int) -> None:
        ratio = size / max(compressed, 1)
        if size > RATIO_FLOOR and ratio > self.limits.max_ratio:
            raise ServiceError(
                "archive_too_large",
                f"{f'Member {member!r}' if member else 'The archive'} expands {ratio:.0f}:1; the limit is "
                f"{self.limits.max_ratio:g}:1 (AI_SERVICE_JOBS_MAX_RATIO): a zip bomb?",
                {
                    "setting": "AI_SERVICE_JOBS_MAX_RATIO",
                    "member": member,
                    "value": round(ratio, 1),
                    "limit": self.limits.max_ratio,
                },
            )

    def read(self, member: str, source: IO[bytes], keep: int | None = None) -> bytes:
        """The member's bytes (only the first `keep` when given), refused as soon as it passes the member or the
        total limit."""
        chunks: list[bytes] = []
        size = 0
        while chunk := source.read(CHUNK):
            if keep is None or size < keep:
                chunks.append(chunk if keep is None else chunk[: keep - size])
            size += len(chunk)
            if size > self.member_limit:
                raise too_large("AI_SERVICE_JOBS_MAX_MEMBER_MB", member, size, self.member_limit, "reaches at least")
            self.count(member, len(chunk))
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def count(self, member: str, size: int) -> None:
        self.unpacked += size
        if self.unpacked > self.total_limit:
            raise too_large(
                "AI_SERVICE_JOBS_MAX_UNPACKED_MB", member, self.unpacked, self.total_limit, "brings the total to"
            )


def scanned(members: Iterable[tuple[str, bytes]]) -> int:
    """The checking pass over (path, first bytes) of each member: a nested archive refuses the upload."""
    count = 0
    for path, head in members:
        member_item(path, head)
        count += 1
    return count


def made(members: Iterator[tuple[str, bytes]]) -> Iterator[JobItem]:
    """The item of each member; no reference to one is kept while the next is read (one member in memory)."""
    for member in members:
        item = member_item(*member)
        del member
        yield item
        del item


# -- zip ------------------------------------------------------------------------------------------------------


class ZipReader:
    """A zip checked on its central directory first (names, types, sizes, ratios), then read member by member."""

    def __init__(self, stream: IO[bytes], limits: JobsSettings) -> None:
        self.stream, self.budget = stream, Budget(limits)

    def scan(self) -> int:
        """Read every member once, keeping only its first bytes: every refusal happens here; the images counted."""
        return scanned(self.members(SNIFF_BYTES))

    def items(self) -> Iterator[JobItem]:
        return made(self.members(None))

    def members(self, keep: int | None) -> Iterator[tuple[str, bytes]]:
        """(path, bytes) of each member to read, in central directory order, after every header check."""
        try:
            archive = zipfile.ZipFile(self.stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
            raise corrupt("", error) from None
        with archive:
            members = self.checked(archive.infolist())
            for path, info in members:
                try:
                    with archive.open(info) as source:
                        data = self.budget.read(path, source, keep)
                except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as error:
                    raise corrupt(path, error) from None
                except NotImplementedError as error:  # a compression method zipfile does not read
                    raise corrupt(path, error) from None
                yield path, data
                data = b""  # not held while the next member is read

    def checked(self, infos: list[zipfile.ZipInfo]) -> list[tuple[str, zipfile.ZipInfo]]:
        """(path, info) of the members to read, after every header check; junk and directories left out."""
        members, declared = [], 0
        for info in infos:
            self.budget.entry(info.orig_filename)
            path = check_name(info.orig_filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise unsafe(info.orig_filename, "a symbolic link")
            if info.is_dir() or not path:
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                raise unsafe(path, "a device, fifo or socket, not a regular file")
            if info.flag_bits & 0x1:
                raise ServiceError(
                    "invalid_archive",
                    f"Member {path!r} is encrypted; send an archive without a password.",
                    {"member": path},
                )
            check_nested(path)
            self.budget.item(path)
            self.budget.declared(path, info.file_size, info.compress_size)
            declared += info.file_size
            if declared > self.budget.total_limit:
                raise too_large(
                    "AI_SERVICE_JOBS_MAX_UNPACKED_MB", path, declared, self.budget.total_limit, "brings the total to"
                )
            members.append((path, info))
        return members


# -- tar ------------------------------------------------------------------------------------------------------


class Counted(io.RawIOBase):
    """The tar stream after decompression, refused as soon as it expands past the ratio or the total limit."""

    def __init__(self, raw: IO[bytes], kind: str, budget: Budget) -> None:
        super().__init__()
        self.raw, self.budget = raw, budget
        self.compressed = kind in OPENERS
        self.inner = OPENERS[kind](raw) if self.compressed else raw
        self.out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(min(len(buffer), CHUNK))
        buffer[: len(data)] = data
        self.out += len(data)
        if self.compressed:
            self.budget.ratio("", self.out, self.raw.tell())
        # members, plus their headers and padding, skipped junk and extended headers
        limit = self.budget.total_limit + TAR_OVERHEAD * (self.budget.entries + 1) + MAX_TAR_HEADER + 2 * CHUNK
        if self.out > limit:
            raise too_large("AI_SERVICE_JOBS_MAX_UNPACKED_MB", "", self.out, self.budget.total_limit, "expands to")
        return len(data)


class CorruptTar(tarfile.TarError):
    """A damaged header after the first one (tarfile would end the archive there silently and drop the rest)."""


class CheckedTarInfo(tarfile.TarInfo):
    """tarfile's header parser, strict about damage and about the size of extended headers it reads into memory."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as error:
            raise CorruptTar(f"damaged header ({error})") from None

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in EXTENDED_TYPES and self.size > MAX_TAR_HEADER:
            raise unsafe(self.name, f"an extended header (long name or pax) of {self.size} bytes")
        return super()._proc_member(tarfile_)


class TarReader:
    """A tar (maybe compressed) read as a stream: each header checked before its member's bytes are read."""

    def __init__(self, stream: IO[bytes], kind: str, limits: JobsSettings) -> None:
        self.budget, self.kind = Budget(limits), kind
        self.source = io.BufferedReader(Counted(stream, kind, self.budget), CHUNK)

    def scan(self) -> int:
        """Read the whole stream once, keeping only each member's first bytes: every refusal happens here."""
        return scanned(self.members(SNIFF_BYTES))

    def items(self) -> Iterator[JobItem]:
        return made(self.members(None))

    def members(self, keep: int | None) -> Iterator[tuple[str, bytes]]:
        """(path, bytes) of each regular member, in stream order, each header checked before its bytes are read."""
        errors = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
        try:
            archive = tarfile.open(
                fileobj=self.source, mode="r|", encoding="utf-8", errors="replace", tarinfo=CheckedTarInfo
            )
        except errors as error:
            inside = isinstance(error, tarfile.TarError) and self.kind in OPENERS
            raise corrupt("", f"the {self.kind} data holds no tar archive ({error})" if inside else error) from None
        path = ""
        with archive:
            try:
                for member in archive:
                    path = self.check(member)
                    if not path:
                        continue
                    source = archive.extractfile(member)
                    yield path, self.budget.read(path, source, keep) if source is not None else b""
            except errors as error:
                raise corrupt(path, error) from None

    def check(self, member: tarfile.TarInfo) -> str:
        """The member's path after its header checks; "" for a directory or junk to skip."""
        self.budget.entry(member.name)
        path = check_name(member.name)
        if member.issym():
            raise unsafe(member.name, f"a symbolic link (to {member.linkname!r})")
        if member.islnk():
            raise unsafe(member.name, f"a hard link (to {member.linkname!r})")
        if member.ischr() or member.isblk() or member.isfifo():
            raise unsafe(member.name, "a device or fifo, not a regular file")
        if member.isdir() or not path:
            return ""
        if not member.isreg():
            raise unsafe(path, f"an entry of tar type {member.type!r}, not a regular file")
        check_nested(path)
        self.budget.item(path)
        self.budget.declared(path, member.size)
        return path
