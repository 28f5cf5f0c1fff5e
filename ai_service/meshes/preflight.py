"""Counts read from headers before any mesh is built: a file that declares 10⁹ faces is refused in microseconds.

Each format's own bookkeeping is read (binary STL's triangle count, PLY's element counts, glTF's accessor counts and
node graph, OBJ's statements), checked for consistency with the bytes actually sent (truncation), and against
`MeshLimits`. glTF buffers and images must be embedded (GLB binary chunk, data: URIs) or members of the uploaded
zip: anything else is refused here, so the loader never asks for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ai_service.meshes.archive import lookup
from ai_service.meshes.errors import MeshError, MeshTooLargeError, UnsafeMeshError
from ai_service.meshes.limits import MeshLimits

GLB_JSON: Final = 0x4E4F534A
GLB_BIN: Final = 0x004E4942
COMPONENT_BYTES: Final = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
TYPE_COMPONENTS: Final = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
PLY_TYPES: Final = {
    **dict.fromkeys(("char", "int8", "uchar", "uint8"), 1),
    **dict.fromkeys(("short", "int16", "ushort", "uint16"), 2),
    **dict.fromkeys(("int", "int32", "uint", "uint32", "float", "float32"), 4),
    **dict.fromkeys(("double", "float64"), 8),
}
PLY_HEADER_BYTES: Final = 64 * 1024
UNITS: Final = re.compile(rb"^[ \t]*(?:#|comment|solid)[^\n]*?\bunits?\b[ \t]*[:=]?[ \t]*([A-Za-z]+)", re.I | re.M)
UNIT_NAMES: Final = {
    "mm": "mm",
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "m": "m",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "in": "in",
    "inch": "in",
    "inches": "in",
    "ft": "ft",
    "foot": "ft",
    "feet": "ft",
}


@dataclass(frozen=True)
class Declared:
    """What the file says about itself before it is parsed."""

    vertices: int
    faces: int
    #: Units the file declares (glTF: metres by its specification; others: a `units` comment), else None.
    units: str | None = None


def preflight(
    fmt: str, data: bytes, limits: MeshLimits, members: Mapping[str, bytes] | None = None, base: str = ""
) -> Declared:
    """Read the counts `fmt` declares, check them against the bytes and the limits; raise MeshError subclasses."""
    members = members or {}
    if fmt == "glb":
        doc, binary = read_glb(data)
        declared = check_gltf(doc, binary, True, members, base, limits)
    elif fmt == "gltf":
        declared = check_gltf(parse_json(data, "glTF"), 0, False, members, base, limits)
    elif fmt == "stl":
        declared = check_stl(data, limits)
    elif fmt == "ply":
        declared = check_ply(data, limits)
    else:
        declared = check_obj(data)
    limits.check_counts(declared.vertices, declared.faces, f"The {fmt.upper()} file")
    return declared


def declared_units(data: bytes) -> str | None:
    """A `units mm` style comment near the top of a text file or header, normalized (mm, cm, m, in, ft)."""
    match = UNITS.search(bytes(data[:4096]))
    return UNIT_NAMES.get(match.group(1).decode("ascii").lower()) if match else None


def read_glb(data: bytes) -> tuple[dict[str, Any], int]:
    """The JSON chunk and the binary chunk's length of a GLB, its header lengths checked against the bytes."""
    if len(data) < 20:
        raise MeshError("The GLB file is truncated (shorter than its 20-byte header).", bytes=len(data))
    _, version, length = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise MeshError(f"GLB version {version} is not supported; export glTF 2.0.", version=version)
    if length > len(data):
        raise MeshError(
            f"The GLB file is truncated: its header declares {length:,} bytes, {len(data):,} arrived.",
            declared=length,
            received=len(data),
        )
    offset, doc, binary = 12, None, 0
    while offset + 8 <= length:
        size, kind = struct.unpack_from("<II", data, offset)
        start, offset = offset + 8, offset + 8 + size
        if offset > length:
            raise MeshError("The GLB file is truncated: a chunk runs past the end of the file.", chunk_bytes=size)
        if kind == GLB_JSON and doc is None:
            doc = parse_json(data[start:offset], "GLB")
        elif kind == GLB_BIN and not binary:
            binary = size
    if doc is None:
        raise MeshError("The GLB file has no JSON chunk.")
    return doc, binary


def parse_json(text: bytes, what: str) -> dict[str, Any]:
    """The glTF JSON document, or a clear error."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise MeshError(f"The {what} JSON is not valid: {str(error)[:200]}.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("asset"), dict):
        raise MeshError(f"The {what} JSON is not a glTF document (no `asset` object).")
    return doc


def items(doc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """A top-level glTF array whose entries are objects."""
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MeshError(f"The glTF `{key}` is not a list of objects.")
    return value


def number(item: Mapping[str, Any], key: str, where: str, default: int | None = 0) -> int:
    """A non-negative integer member, or a clear error."""
    value = item.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MeshError(f"The glTF {where} has an invalid `{key}` ({str(value)[:40]}).")
    return value


def index(item: Mapping[str, Any], key: str, length: int, where: str) -> int:
    """A member that indexes another glTF array, in range."""
    value = number(item, key, where, None)
    if value >= length:
        raise MeshError(f"The glTF {where} points at {key} {value}, which does not exist.")
    return value


def external(uri: str, where: str, members: Mapping[str, bytes], base: str) -> bytes:
    """The bytes of a non-data URI, from the uploaded zip only; any other file or URL is refused unread."""
    key = lookup(uri, base, dict(members))
    if key is None:
        raise UnsafeMeshError(
            f"The glTF {where} refers to {uri[:120]!r}, which is not part of the upload; the server never opens "
            "files or URLs. Send a GLB, embed the data (data: URIs), or zip the .gltf with its files.",
            uri=uri[:200],
        )
    return members[key]


def data_uri_bytes(uri: str, where: str) -> int:
    """How many bytes a base64 data: URI holds, without decoding it."""
    head, _, payload = uri.partition(",")
    if ";base64" not in head:
        raise MeshError(f"The glTF {where} data: URI is not base64.")
    try:
        base64.b64decode(payload[-8:] if len(payload) >= 8 else payload, validate=False)
    except binascii.Error:
        raise MeshError(f"The glTF {where} data: URI is not valid base64.") from None
    return len(payload) * 3 // 4 - payload[-2:].count("=")


def check_gltf(
    doc: dict[str, Any], binary: int, glb: bool, members: Mapping[str, bytes], base: str, limits: MeshLimits
) -> Declared:
    """Buffers embedded or in the zip, views and accessors inside them, and the flattened scene's counts."""
    sizes = []
    for i, buffer in enumerate(items(doc, "buffers")):
        where, uri, length = f"buffer {i}", buffer.get("uri"), number(buffer, "byteLength", f"buffer {i}")
        if uri is None:
            if not glb or i != 0:
                raise MeshError(f"The glTF {where} has no data (no `uri`, and it is not a GLB's binary chunk).")
            available = binary
        elif not isinstance(uri, str):
            raise MeshError(f"The glTF {where} has an invalid `uri`.")
        elif uri.startswith("data:"):
            available = data_uri_bytes(uri, where)
        else:
            available = len(external(uri, where, members, base))
        if length > available:
            raise MeshError(
                f"The glTF {where} declares {length:,} bytes but holds {available:,} (truncated?).",
                declared=length,
                available=available,
            )
        sizes.append(length)
    for i, image in enumerate(items(doc, "images")):
        uri = image.get("uri")
        if isinstance(uri, str) and not uri.startswith("data:"):
            external(uri, f"image {i}", members, base)
    views = items(doc, "bufferViews")
    for i, view in enumerate(views):
        buffer = index(view, "buffer", len(sizes), f"bufferView {i}")
        end = number(view, "byteOffset", f"bufferView {i}") + number(view, "byteLength", f"bufferView {i}")
        if end > sizes[buffer]:
            raise MeshError(f"The glTF bufferView {i} runs past the end of buffer {buffer}.")
    accessors = items(doc, "accessors")
    counts = [check_accessor(accessor, i, views, limits) for i, accessor in enumerate(accessors)]
    meshes = [mesh_counts(mesh, i, counts) for i, mesh in enumerate(items(doc, "meshes"))]
    vertices, faces, instances = scene_counts(doc, meshes, limits)
    if instances > limits.max_nodes:
        raise MeshTooLargeError(
            f"The glTF scene places {instances:,} meshes; the limit is {limits.max_nodes:,}.",
            instances=instances,
            max_nodes=limits.max_nodes,
        )
    return Declared(vertices, faces, "m")


def check_accessor(accessor: dict[str, Any], i: int, views: list[dict[str, Any]], limits: MeshLimits) -> int:
    """The accessor's element count, once it is within the limits and its elements lie inside its bufferView."""
    where = f"accessor {i}"
    count = number(accessor, "count", where)
    most = max(limits.max_vertices, 3 * limits.max_faces)  # vertex attributes, or three indices per triangle
    if count > most:
        raise MeshTooLargeError(
            f"The glTF {where} declares {count:,} elements; no vertex attribute or index list may exceed {most:,} "
            "under the vertex and face limits.",
            count=count,
            max_vertices=limits.max_vertices,
            max_faces=limits.max_faces,
        )
    if "sparse" in accessor:
        raise MeshError(f"The glTF {where} is sparse, which is not supported.")
    if "bufferView" not in accessor or count == 0:
        return count
    view = views[index(accessor, "bufferView", len(views), where)]
    component, kind = accessor.get("componentType"), accessor.get("type")
    if component not in COMPONENT_BYTES or kind not in TYPE_COMPONENTS:
        raise MeshError(f"The glTF {where} has an unknown componentType or type.")
    element = COMPONENT_BYTES[component] * TYPE_COMPONENTS[kind]
    stride = number(view, "byteStride", where) or element
    end = number(accessor, "byteOffset", where) + (count - 1) * stride + element
    if end > number(view, "byteLength", where):
        raise MeshError(f"The glTF {where} reads past the end of its bufferView ({count:,} elements declared).")
    return count


def mesh_counts(mesh: dict[str, Any], i: int, counts: list[int]) -> tuple[int, int]:
    """(vertices, triangles) of one glTF mesh, from its primitives' accessor counts."""
    vertices = faces = 0
    for primitive in mesh.get("primitives", []):
        attributes = primitive.get("attributes", {}) if isinstance(primitive, dict) else None
        if not isinstance(attributes, dict) or "POSITION" not in attributes:
            raise MeshError(f"The glTF mesh {i} has a primitive without POSITION.")
        points = counts[index(attributes, "POSITION", len(counts), f"mesh {i}")]
        corners = counts[index(primitive, "indices", len(counts), f"mesh {i}")] if "indices" in primitive else points
        mode = primitive.get("mode", 4)
        vertices += points
        faces += corners // 3 if mode == 4 else max(corners - 2, 0) if mode in (5, 6) else 0
    return vertices, faces


def scene_counts(doc: dict[str, Any], meshes: list[tuple[int, int]], limits: MeshLimits) -> tuple[int, int, int]:
    """(vertices, faces, mesh instances) of the scene once every node's mesh is placed; cycles are refused."""
    nodes = items(doc, "nodes")
    if len(nodes) > limits.max_nodes:
        raise MeshTooLargeError(
            f"The glTF has {len(nodes):,} nodes; the limit is {limits.max_nodes:,}.", max_nodes=limits.max_nodes
        )
    children = [
        [index({"child": c}, "child", len(nodes), f"node {i}") for c in node.get("children", [])]
        for i, node in enumerate(nodes)
    ]
    scenes = items(doc, "scenes")
    if scenes:
        chosen = scenes[index(doc, "scene", len(scenes), "document") if "scene" in doc else 0]
        roots = [index({"node": n}, "node", len(nodes), "scene") for n in chosen.get("nodes", [])]
    else:
        below = {child for kids in children for child in kids}
        roots = [i for i in range(len(nodes)) if i not in below]
    totals: dict[int, tuple[int, int, int]] = {}
    for root in roots:
        post_order(root, nodes, children, meshes, totals)
    sums = [sum(part) for part in zip(*(totals[root] for root in roots))] if roots else [0, 0, 0]
    if not nodes and meshes:  # meshes with no scene: loaders show each once
        sums = [sum(v for v, _ in meshes), sum(f for _, f in meshes), len(meshes)]
    return sums[0], sums[1], sums[2]


def post_order(
    root: int,
    nodes: list[dict[str, Any]],
    children: list[list[int]],
    meshes: list[tuple[int, int]],
    totals: dict[int, tuple[int, int, int]],
) -> None:
    """Fill `totals[node]` = (vertices, faces, instances) below and at each node, without recursion."""
    stack, open_nodes = [(root, False)], set()
    while stack:
        node, done = stack.pop()
        if node in totals:
            continue
        if done:
            open_nodes.discard(node)
            vertices = faces = instances = 0
            if "mesh" in nodes[node]:
                vertices, faces = meshes[index(nodes[node], "mesh", len(meshes), f"node {node}")]
                instances = 1
            for child in children[node]:
                v, f, n = totals[child]
                vertices, faces, instances = vertices + v, faces + f, instances + n
            totals[node] = (vertices, faces, instances)
            continue
        if node in open_nodes:
            raise MeshError(f"The glTF node graph has a cycle through node {node}.")
        open_nodes.add(node)
        stack.append((node, True))
        for child in children[node]:
            if child in open_nodes:
                raise MeshError(f"The glTF node graph has a cycle through node {child}.")
            stack.append((child, False))


def check_stl(data: bytes, limits: MeshLimits) -> Declared:
    """A binary STL's triangle count (against the limits, then against its length); an ASCII STL's facets."""
    binary = len(data) >= 84 and len(data) == 84 + 50 * struct.unpack_from("<I", data, 80)[0]
    if not binary and data.lstrip()[:5].lower() == b"solid":
        faces = data.lower().count(b"endfacet")
        if not faces:
            raise MeshError("The ASCII STL file has no facets.")
        return Declared(0, faces, declared_units(data))
    if len(data) < 84:
        raise MeshError("The binary STL file is truncated (shorter than its 84-byte header).", received=len(data))
    (faces,) = struct.unpack_from("<I", data, 80)
    limits.check_counts(0, faces, "The STL file")
    if len(data) < 84 + 50 * faces:
        raise MeshError(
            f"The binary STL file is truncated: it declares {faces:,} triangles ({84 + 50 * faces:,} bytes), "
            f"{len(data):,} bytes arrived.",
            declared=faces,
            received=len(data),
        )
    return Declared(0, faces, None)


@dataclass
class PlyElement:
    name: str
    count: int
    #: Fixed byte size per element, or the minimum when it has list properties.
    size: int = 0


def check_ply(data: bytes, limits: MeshLimits) -> Declared:
    """PLY header: element counts, and for binary files enough bytes for every declared element."""
    end = data.find(b"end_header", 0, PLY_HEADER_BYTES)
    if end < 0:
        raise MeshError("The PLY header has no end_header in its first 64 KB.")
    body = data.find(b"\n", end) + 1
    header = data[:end].decode("latin-1").splitlines()
    fmt, elements = "", []
    for line in header:
        words = line.split()
        if not words:
            continue
        if words[0] == "format" and len(words) > 1:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            if not words[2].isdigit():
                raise MeshError(f"The PLY element {words[1][:40]!r} has an invalid count.")
            elements.append(PlyElement(words[1], int(words[2])))
        elif words[0] == "property" and elements and len(words) >= 3:
            if words[1] == "list" and len(words) >= 5:
                elements[-1].size += PLY_TYPES.get(words[2], 1)
            else:
                elements[-1].size += PLY_TYPES.get(words[1], 1)
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise MeshError(f"The PLY format {fmt[:40]!r} is not ascii or binary.")
    counts = {element.name: element.count for element in elements}
    vertices, faces = counts.get("vertex", 0), counts.get("face", 0)
    other = sum(count for name, count in counts.items() if name not in ("vertex", "face"))
    limits.check_counts(vertices + other, faces, "The PLY file")
    if fmt != "ascii" and body > 0:
        needed = sum(element.count * element.size for element in elements)
        if len(data) - body < needed:
            raise MeshError(
                f"The PLY file is truncated: its header declares at least {needed:,} bytes of data, "
                f"{len(data) - body:,} arrived.",
                declared=needed,
                received=len(data) - body,
            )
    return Declared(vertices + other, faces, declared_units(data[:end]))


def check_obj(data: bytes) -> Declared:
    """OBJ statements counted: `v` lines, and triangles from the corners of `f` lines (a polygon of n corners is
    n - 2 triangles)."""
    vertices = len(re.findall(rb"^[ \t]*v[ \t]", data, re.M))
    lines = re.findall(rb"^[ \t]*f[ \t]+([^\r\n]*)", data, re.M)
    corners = len(b" ".join(lines).split())
    return Declared(vertices, max(corners - 2 * len(lines), 0), declared_units(data))
