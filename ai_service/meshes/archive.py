"""A zip of a model and its files (OBJ + MTL + textures, glTF + .bin), unpacked into memory within bounds.

Nothing is written to disk: members become a name -> bytes mapping that the loader's resolver serves from, so a
member named `../../etc/passwd` is only ever a key. Declared sizes are checked before reading (total, ratio, count)
and every read is capped, so a zip whose headers lie cannot expand past the limits either.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass, field
from urllib.parse import unquote

from ai_service.meshes.errors import MeshError, MeshTooLargeError, UnsafeMeshError
from ai_service.meshes.limits import MIB, MeshLimits
from ai_service.meshes.sniff import EXTENSIONS

#: A member smaller than this is never a bomb, whatever its ratio (tiny text files compress a lot).
RATIO_FLOOR = 1 * MIB


@dataclass
class Unpacked:
    """The members of a zip by normalized path, and the names that were skipped (and why)."""

    members: dict[str, bytes]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def model_name(self) -> str:
        """The one model file in the zip (by extension); none or several is a clear 422."""
        found = sorted(name for name in self.members if posixpath.splitext(name)[1].lower() in EXTENSIONS)
        if not found:
            raise MeshError(
                "The zip holds no 3D model (.glb, .gltf, .obj, .stl or .ply).", members=sorted(self.members)[:20]
            )
        if len(found) > 1:
            raise MeshError("The zip holds several 3D models; send one per request.", models=found[:20])
        return found[0]


def normalize_name(name: str) -> str | None:
    """A member's path as the loader looks it up, or None when it names something outside the zip."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    clean = posixpath.normpath(name)
    if clean == ".." or clean.startswith("../"):
        return None
    return clean


def unpack_zip(data: bytes, limits: MeshLimits) -> Unpacked:
    """Read every regular member into memory; refuse bombs, lying headers, encryption and damage."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise MeshError(f"The zip is damaged or truncated: {error}.") from None
    if len(infos) > limits.max_members:
        raise MeshTooLargeError(
            f"The zip has {len(infos):,} members; the limit is {limits.max_members:,}.",
            members=len(infos),
            max_members=limits.max_members,
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_unpacked_bytes:
        raise too_big(declared, limits)
    unpacked = Unpacked({})
    for info in infos:
        if info.is_dir():
            continue
        name = normalize_name(info.filename)
        if name is None or name.startswith("__MACOSX/"):
            unpacked.skipped.append({"name": info.filename[:200], "reason": "outside the archive's folder"})
            continue
        if info.flag_bits & 0x1:
            raise MeshError("The zip is encrypted; send it without a password.", member=info.filename[:200])
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > limits.max_ratio:
            raise UnsafeMeshError(
                f"The zip member {info.filename[:100]!r} expands {ratio:.0f} times; the limit is "
                f"{limits.max_ratio:g} (a zip bomb?).",
                member=info.filename[:200],
                ratio=round(ratio, 1),
                max_ratio=limits.max_ratio,
            )
        unpacked.members[name] = read_member(archive, info)
    total = sum(len(value) for value in unpacked.members.values())
    if total > limits.max_unpacked_bytes:
        raise too_big(total, limits)
    return unpacked


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, read no further than its declared size (a lying header is an error, not a bomb)."""
    try:
        with archive.open(info) as member:
            content = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as error:
        raise MeshError(f"The zip member {info.filename[:100]!r} cannot be read: {error}.") from None
    if len(content) != info.file_size:
        raise UnsafeMeshError(
            f"The zip member {info.filename[:100]!r} is not the size its header declares.", member=info.filename[:200]
        )
    return content


def too_big(size: int, limits: MeshLimits) -> MeshTooLargeError:
    return MeshTooLargeError(
        f"The zip unpacks to {size / MIB:.1f} MB; the limit is {limits.max_unpacked_bytes / MIB:g} MB.",
        unpacked_bytes=size,
        max_unpacked_bytes=limits.max_unpacked_bytes,
    )


def lookup(reference: str, base: str, members: dict[str, bytes]) -> str | None:
    """The member a model's reference names (relative to the model's folder), or None: never a path outside.

    Exporters write Windows paths and odd cases (`C:\\Users\\me\\wood.PNG`), so after the exact path a unique
    case-insensitive match and then a unique file-name match are tried, still among the members only."""
    text = unquote(reference.strip().strip('"'))
    if not text or "://" in text or text.startswith(("data:", "file:")):
        return None
    name = normalize_name(posixpath.join(base, text.replace("\\", "/"))) if not is_absolute(text) else None
    if name is not None and name in members:
        return name
    if name is not None:
        folded = [key for key in members if key.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
    leaf = posixpath.basename(text.replace("\\", "/")).lower()
    same = [key for key in members if posixpath.basename(key).lower() == leaf]
    return same[0] if len(same) == 1 else None


def is_absolute(path: str) -> bool:
    """/etc/passwd, C:\\x, \\\\server\\share: never joined to the model's folder."""
    return path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":")
