"""A loaded model written as GLB, OBJ (a zip with its MTL and textures), STL or PLY."""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Final

import numpy as np
import trimesh

from ai_service.meshes.load import Model

#: Output format -> (content type, extension of the file sent back).
OUTPUTS: Final = {
    "glb": ("model/gltf-binary", ".glb"),
    "obj": ("application/zip", ".zip"),
    "stl": ("model/stl", ".stl"),
    "ply": ("application/x-ply", ".ply"),
}


@dataclass(frozen=True)
class Exported:
    """The converted model as file bytes, with the name and type to send it under."""

    data: bytes
    format: str
    filename: str

    @property
    def content_type(self) -> str:
        return OUTPUTS[self.format][0]


def export_model(model: Model, fmt: str) -> Exported:
    """GLB keeps the scene (nodes, materials, textures); OBJ keeps materials and textures, zipped; STL keeps the
    flattened geometry; PLY the flattened geometry with vertex colors (textures sampled at the vertices)."""
    stem = posixpath.splitext(model.name)[0] or "model"
    if fmt == "glb":
        data = model.scene.export(file_type="glb")
    elif fmt == "obj":
        data = obj_zip(model, stem)
    else:
        data = flattened(model, colors=fmt == "ply").export(file_type=fmt)
    return Exported(bytes(data), fmt, stem + OUTPUTS[fmt][1])


def flattened(model: Model, colors: bool) -> trimesh.Trimesh:
    """Every part in one world-space mesh, vertices kept as they are (no merging: counts survive)."""
    vertices, faces, vertex_colors, offset = [], [], [], 0
    for part in model.parts:
        vertices.append(part.vertices)
        faces.append(part.faces + offset)
        offset += len(part.vertices)
        if colors:
            visual = part.visual
            if isinstance(visual, trimesh.visual.TextureVisuals):
                visual = visual.to_color()
            vertex_colors.append(np.asarray(visual.vertex_colors, np.uint8))
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
    if colors:
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.concatenate(vertex_colors))
    return mesh


def obj_zip(model: Model, stem: str) -> bytes:
    """`<stem>.obj` with its `<stem>.mtl` and texture images, in one zip (one object per part)."""
    mesh = model.scene.to_geometry() if len(model.parts) > 1 else model.parts[0]
    text, files = trimesh.exchange.obj.export_obj(
        mesh, include_texture=True, return_texture=True, mtl_name=f"{stem}.mtl", header=None
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}.obj", text)
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()
