"""3D models the mesh tests generate with trimesh, in every format we read, plus hostile ones (no files checked in)."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import trimesh
from PIL import Image

FORMATS = ("glb", "gltf", "obj", "stl", "stl-ascii", "ply", "ply-ascii")


def cube() -> trimesh.Trimesh:
    """The unit cube centred on the origin: 8 vertices, 12 triangles, volume 1, area 6."""
    return trimesh.creation.box(extents=(1.0, 1.0, 1.0))


def sphere() -> trimesh.Trimesh:
    """An icosphere of radius 1: 642 vertices, 1280 triangles."""
    return trimesh.creation.icosphere(subdivisions=3, radius=1.0)


def checker(size: int = 8) -> Image.Image:
    """A red/blue checkerboard texture, so a wrong UV shows."""
    cells = (np.indices((size, size)).sum(axis=0) % 2).astype(bool)
    pixels = np.where(cells[..., None], [220, 30, 30], [30, 30, 220]).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def textured_quad() -> trimesh.Trimesh:
    """A unit square in the XY plane with a checker texture: 4 vertices, 2 triangles, area 1, not watertight."""
    quad = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]], process=False)
    material = trimesh.visual.material.SimpleMaterial(image=checker(), name="checker")
    quad.visual = trimesh.visual.TextureVisuals(uv=[[0, 0], [1, 0], [1, 1], [0, 1]], material=material)
    return quad


def scene() -> trimesh.Scene:
    """Two cubes and a sphere placed by transforms: a red cube at x=+3, a blue one raised and scaled 2x at x=-3."""
    placed = trimesh.Scene()
    red = cube()
    red.visual.face_colors = [220, 40, 40, 255]
    placed.add_geometry(red, node_name="red", transform=trimesh.transformations.translation_matrix([3, 0, 0]))
    blue = cube()
    blue.visual.face_colors = [40, 40, 220, 255]
    big = trimesh.transformations.translation_matrix([-3, 1, 0]) @ np.diag([2.0, 2.0, 2.0, 1.0])
    placed.add_geometry(blue, node_name="blue", transform=big)
    placed.add_geometry(sphere(), node_name="ball")
    return placed


def encode(model: trimesh.Trimesh | trimesh.Scene, fmt: str) -> bytes:
    """The model as an upload in `fmt` (an OBJ with a material comes zipped with its MTL and texture)."""
    if fmt == "gltf":
        files = model.export(file_type="gltf", embed_buffers=True)
        return files["model.gltf"]
    if fmt == "stl-ascii":
        mesh = model.to_geometry() if isinstance(model, trimesh.Scene) else model
        return trimesh.exchange.stl.export_stl_ascii(mesh).encode()
    if fmt == "ply-ascii":
        mesh = model.to_geometry() if isinstance(model, trimesh.Scene) else model
        return trimesh.exchange.ply.export_ply(mesh, encoding="ascii")
    if fmt == "obj":
        text, files = trimesh.exchange.obj.export_obj(
            model, include_texture=True, return_texture=True, mtl_name="model.mtl", header=None
        )
        if not files:
            return text.encode()
        return zipped({"model.obj": text.encode(), **files})
    data = model.export(file_type=fmt)
    return data.encode() if isinstance(data, str) else data


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def stl_declaring(faces: int) -> bytes:
    """A binary STL header that declares `faces` triangles, followed by one."""
    return b"\0" * 80 + struct.pack("<I", faces) + b"\0" * 50


def ply_declaring(faces: int) -> bytes:
    """A binary PLY whose header declares `faces` faces and no data."""
    return (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        b"property float z\nelement face %d\nproperty list uchar int vertex_indices\nend_header\n" % faces
    )


def glb_declaring(count: int) -> bytes:
    """A GLB whose one accessor declares `count` vertices in a 36-byte buffer."""
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": count, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    return glb(doc, b"\0" * 36)


def glb(doc: dict, binary: bytes) -> bytes:
    """A GLB container around a JSON document and a binary chunk."""
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def gltf_pointing_at(uri: str) -> bytes:
    """A glTF whose buffer is a file or URL outside the upload."""
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"uri": uri, "byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    return json.dumps(doc).encode()


def obj_referencing(mtl: str, texture: str) -> bytes:
    """A zipped OBJ naming `mtl` as its material library (the zip holds model.mtl), whose material's texture is
    `texture`."""
    obj = f"mtllib {mtl}\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl skin\nf 1 2 3\n".encode()
    material = f"newmtl skin\nKd 1 1 1\nmap_Kd {texture}\n".encode()
    return zipped({"model.obj": obj, "model.mtl": material})


def zip_bomb(megabytes: int = 16) -> bytes:
    """A small zip whose one extra member unpacks to `megabytes` of zeros, next to a valid OBJ."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
        with archive.open("padding.bin", "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 20)
            for _ in range(megabytes):
                member.write(chunk)
    return buffer.getvalue()


def trimesh_sphere(subdivisions: int) -> trimesh.Trimesh:
    """A finer icosphere of radius 1 (silhouette tests)."""
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)


def trimesh_box(extents: tuple[float, float, float]) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents)


def trimesh_load(data: bytes, file_type: str) -> trimesh.Trimesh:
    """A downloaded model read back by trimesh itself (not by the code under test)."""
    return trimesh.load_mesh(io.BytesIO(data), file_type=file_type)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height and whose pixels never arrive (a texture bomb's first bytes)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def glb_textured_with(image: bytes) -> bytes:
    """A textured unit quad as a hand-made GLB whose base color texture is `image` (PNG bytes)."""
    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32).tobytes()
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32).tobytes()
    indices = np.array([0, 1, 2, 0, 2, 3], np.uint16).tobytes() + b"\0\0"
    image += b"\0" * (-len(image) % 4)
    parts = [positions, uvs, indices, image]
    offsets = np.cumsum([0, *map(len, parts)]).tolist()
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": offsets[-1]}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": offsets[i], "byteLength": len(part)} for i, part in enumerate(parts)
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],
        "images": [{"bufferView": 3, "mimeType": "image/png"}],
        "textures": [{"source": 0}],
        "materials": [{"name": "skin", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    }
    return glb(doc, b"".join(parts))
