"""Bytes -> `Model`: sniffed, unzipped, preflighted, then built by trimesh with a resolver confined to the upload.

trimesh asks its resolver for every file a model names (an OBJ's MTL and textures, a glTF's buffers and images).
`ConfinedResolver` answers from the uploaded zip's members only and records every other name; nothing else is ever
opened, whatever the name (`/etc/passwd`, `../x`, `http://…`). The scene is flattened with its transforms into
`parts`, one world-space mesh per placed geometry, which the facts, the renderer and the exporters share.
"""

from __future__ import annotations

import io
import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import trimesh
from trimesh.resolvers import Resolver

from ai_service.meshes.archive import lookup, unpack_zip
from ai_service.meshes.errors import MeshError, MeshTooLargeError, UnsupportedMeshError
from ai_service.meshes.limits import MeshLimits
from ai_service.meshes.preflight import Declared, preflight
from ai_service.meshes.sniff import MODEL_FORMATS, sniff_mesh

logging.getLogger("trimesh").setLevel(logging.ERROR)  # its debug/warnings describe our refusals, not problems


class ConfinedResolver(Resolver):
    """trimesh's view of the files next to the model: the uploaded zip's members, nothing else."""

    def __init__(self, members: dict[str, bytes], base: str = "", refused: list[str] | None = None) -> None:
        self.members, self.base = members, base
        #: Names the model asked for that are not in the upload (never opened anywhere).
        self.refused: list[str] = [] if refused is None else refused

    def get(self, key: str) -> bytes:
        name = lookup(str(key), self.base, self.members)
        if name is None:
            self.refused.append(str(key)[:200])
            raise OSError(f"{str(key)[:200]!r} is not part of the upload")
        return self.members[name]

    def write(self, name: str, data: Any) -> None:
        raise OSError("the upload is read-only")

    def namespaced(self, namespace: str) -> ConfinedResolver:
        return ConfinedResolver(self.members, posixpath.join(self.base, namespace), self.refused)

    def keys(self) -> Iterator[str]:
        return iter(self.members)


@dataclass
class Model:
    """A loaded 3D model: its scene, the scene flattened into world-space parts, and what loading it found."""

    #: glb, gltf, obj, stl or ply (a zip's model file's format).
    format: str
    #: The model file's name: the upload's, or the zip member's.
    name: str
    scene: trimesh.Scene
    #: One world-space triangle mesh per placed geometry (transforms applied), with its colors or texture.
    parts: list[trimesh.Trimesh]
    #: The counts and units the file declared.
    declared: Declared
    #: References not read: {name, reason} (outside the upload, or missing from the zip).
    ignored: list[dict[str, str]] = field(default_factory=list)
    #: Whether it arrived as a zip.
    zipped: bool = False

    @cached_property
    def geometry(self) -> trimesh.Trimesh:
        """All parts as one mesh, coincident vertices merged (what watertightness and volume are computed on)."""
        vertices, faces, offset = [], [], 0
        for part in self.parts:
            vertices.append(part.vertices)
            faces.append(part.faces + offset)
            offset += len(part.vertices)
        return trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=True, validate=False)

    @property
    def vertex_count(self) -> int:
        return sum(len(part.vertices) for part in self.parts)

    @property
    def face_count(self) -> int:
        return sum(len(part.faces) for part in self.parts)

    @property
    def bounds(self) -> np.ndarray:
        """[[xmin, ymin, zmin], [xmax, ymax, zmax]] of every part."""
        stacked = np.concatenate([part.bounds for part in self.parts])
        return np.array([stacked.min(axis=0), stacked.max(axis=0)])


def load_model(data: bytes, limits: MeshLimits, filename: str = "") -> Model:
    """Sniff, unzip, preflight and build; raises MeshError subclasses (unsupported, too large, unsafe, invalid)."""
    limits.check_bytes(len(data), "The upload")
    fmt = sniff_mesh(data, filename)
    if fmt is None:
        raise UnsupportedMeshError(
            "The file is not a 3D format we read (GLB, glTF with embedded buffers, OBJ, STL, PLY, or a zip of an "
            "OBJ with its MTL and textures / a glTF with its files)."
        )
    members: dict[str, bytes] = {}
    name, zipped, ignored = posixpath.basename(filename.replace("\\", "/")), fmt == "zip", []
    if zipped:
        unpacked = unpack_zip(data, limits)
        members, ignored = unpacked.members, [dict(item) for item in unpacked.skipped]
        name = unpacked.model_name()
        data = members[name]
        fmt = sniff_mesh(data, name)
        if fmt not in MODEL_FORMATS:
            raise MeshError(f"The zip member {name!r} is not a 3D format we read.", member=name)
    base = posixpath.dirname(name) if zipped else ""
    declared = preflight(fmt, data, limits, members, base)
    resolver = ConfinedResolver(members, base)
    scene = build_scene(fmt, data, resolver)
    check_textures(scene, limits)
    refused = dict.fromkeys(resolver.refused)
    ignored += [{"name": ref, "reason": "not part of the upload; never opened"} for ref in refused]
    parts = [part for part in scene.dump(concatenate=False) if isinstance(part, trimesh.Trimesh) and len(part.faces)]
    if not parts:
        raise MeshError(f"The {fmt.upper()} file has no triangles (points or lines only?).")
    model = Model(fmt, name or f"model.{fmt}", scene, parts, declared, ignored, zipped)
    limits.check_counts(model.vertex_count, model.face_count, f"The {fmt.upper()} model")
    return model


def check_textures(scene: trimesh.Scene, limits: MeshLimits) -> None:
    """Refuse a texture image larger than the limit from its header size, before its pixels are decoded (Pillow
    opens lazily; flattening the scene copies, and so decodes, every image)."""
    for geometry in scene.geometry.values():
        material = getattr(getattr(geometry, "visual", None), "material", None)
        for image in (getattr(material, "image", None), getattr(material, "baseColorTexture", None)):
            size = getattr(image, "size", None)
            if size and size[0] * size[1] > limits.max_texture_pixels:
                raise MeshTooLargeError(
                    f"A texture is {size[0]}x{size[1]} pixels; the limit is {limits.max_texture_pixels:,}.",
                    width=size[0],
                    height=size[1],
                    max_texture_pixels=limits.max_texture_pixels,
                )


def build_scene(fmt: str, data: bytes, resolver: ConfinedResolver) -> trimesh.Scene:
    """trimesh's parse of bytes already preflighted; its many exception types become one MeshError."""
    try:
        return trimesh.load_scene(io.BytesIO(data), file_type=fmt, resolver=resolver)
    except MemoryError:
        raise MeshError(f"The {fmt.upper()} file is too large to read.") from None
    except Exception as error:  # noqa: BLE001 - trimesh raises anything from ValueError to struct.error
        why = str(error)[:200] or type(error).__name__
        raise MeshError(f"The {fmt.upper()} file could not be read: {why}.") from None
