"""Which 3D format some bytes are, from their content (magic numbers, text keywords), never from a file name."""

from __future__ import annotations

import re
import struct
from typing import Final

#: Formats a model file may have (a zip carries one of them with its files).
MODEL_FORMATS: Final = ("glb", "gltf", "obj", "stl", "ply")
#: Extensions of model files inside a zip, by format.
EXTENSIONS: Final = {".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".stl": "stl", ".ply": "ply"}
ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06")
SAMPLE: Final = 64 * 1024
#: Statements an OBJ file is made of (its first one decides nothing; every sampled line must be one of these).
OBJ_KEYWORDS: Final = frozenset(
    b"v vn vt vp f l p o g s mtllib usemtl cstype deg bmat step curv curv2 surf parm trim hole scrv sp end con "
    b"mg lod bevel c_interp d_interp trace_obj shadow_obj ctech stech maplib usemap".split()
)
ASCII_STL: Final = re.compile(rb"^\s*solid\b[^\n]*\n\s*(facet|endsolid)\b", re.IGNORECASE)


def sniff_mesh(data: bytes, filename: str = "") -> str | None:
    """glb, gltf, obj, stl, ply, zip, or None when the bytes are no 3D format we read.

    `filename` only tells a truncated binary STL (which has no magic number) from unknown bytes, so that it is
    reported as damaged rather than unsupported."""
    head = bytes(data[:SAMPLE])
    if head[:4] == b"glTF":
        return "glb"
    if head[:4] in ZIP_MAGIC:
        return "zip"
    if head.startswith((b"ply\n", b"ply\r\n")):
        return "ply"
    if is_binary_stl(data):
        return "stl"
    if b"\x00" not in head:
        if ASCII_STL.match(head):
            return "stl"
        stripped = head.lstrip()
        if stripped[:1] == b"{" and b'"asset"' in data:
            return "gltf"
        if looks_like_obj(head):
            return "obj"
    if filename.lower().endswith(".stl") and len(data) >= 84:
        return "stl"
    return None


def is_binary_stl(data: bytes) -> bool:
    """An 80-byte header, a triangle count, and exactly 50 bytes per triangle after it."""
    if len(data) < 84:
        return False
    (count,) = struct.unpack_from("<I", data, 80)
    return len(data) == 84 + 50 * count


def looks_like_obj(head: bytes) -> bool:
    """Every complete sampled line is an OBJ statement or a comment, and at least one is a vertex."""
    lines = head.splitlines()
    if len(head) == SAMPLE and len(lines) > 1:
        lines = lines[:-1]  # the sample may cut the last line
    vertices = 0
    for line in lines:
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        keyword = line.split(None, 1)[0]
        if keyword not in OBJ_KEYWORDS:
            return False
        vertices += keyword == b"v"
    return vertices > 0
