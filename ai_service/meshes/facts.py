"""What a designer asks of a model before using it: counts, size, area, volume, watertightness, materials."""

from __future__ import annotations

from typing import Any

import numpy as np
import trimesh

from ai_service.meshes.load import Model

DIGITS = 6


def rounded(values: Any) -> Any:
    """Floats rounded for JSON (float32 noise such as 0.99999994 reads as 1.0)."""
    return (np.round(np.asarray(values, dtype=float), DIGITS) + 0.0).tolist()  # + 0.0: no -0.0 in JSON


def inspect_model(model: Model) -> dict[str, Any]:
    """The facts of a loaded model, in its own units (see `units`), every part placed by its transform."""
    geometry = model.geometry
    bounds = model.bounds
    watertight = bool(geometry.is_watertight)
    return {
        "format": model.format,
        "name": model.name,
        "zipped": model.zipped,
        "vertices": model.vertex_count,
        "faces": model.face_count,
        "parts": len(model.parts),
        "bounds": rounded(bounds),
        "extents": rounded(bounds[1] - bounds[0]),
        "centroid": rounded(geometry.centroid),
        "surface_area": float(round(geometry.area, DIGITS)),
        "volume": float(round(abs(geometry.volume), DIGITS)) if watertight else None,
        "watertight": watertight,
        "units": model.declared.units or model.scene.units,
        "materials": materials(model),
        "textures": textures(model),
        "ignored_references": model.ignored,
    }


def materials(model: Model) -> list[dict[str, Any]]:
    """Each distinct material once: its name, base color (#rrggbbaa) and whether a texture image came with it."""
    found: dict[str, dict[str, Any]] = {}
    for part in model.parts:
        material = getattr(part.visual, "material", None)
        if material is None:
            continue
        name = str(getattr(material, "name", None) or f"material_{len(found)}")
        color = np.asarray(getattr(material, "main_color", [255, 255, 255, 255]), dtype=np.uint8)
        found.setdefault(name, {"name": name, "color": "#" + bytes(color[:4].tolist()).hex(), "textured": False})
        found[name]["textured"] |= texture_image(material) is not None
    return list(found.values())


def textures(model: Model) -> list[dict[str, Any]]:
    """Each texture image found (once per material): its material, pixel size and file name when it had one."""
    found: dict[str, dict[str, Any]] = {}
    for part in model.parts:
        material = getattr(part.visual, "material", None)
        image = texture_image(material) if material is not None else None
        if image is None:
            continue
        name = str(getattr(material, "name", None) or f"material_{len(found)}")
        source = image.info.get("file_path") if hasattr(image, "info") else None
        found.setdefault(name, {"material": name, "width": image.width, "height": image.height, "file": source})
    return list(found.values())


def texture_image(material: Any) -> Any:
    """The material's color image: `image` (simple materials) or `baseColorTexture` (glTF PBR)."""
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        return material.baseColorTexture
    return getattr(material, "image", None)
