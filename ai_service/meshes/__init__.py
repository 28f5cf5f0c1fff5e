"""3D models (GLB/glTF, OBJ with its MTL and textures, STL, PLY): safe loading, facts, rendering, conversion.

Pure functions of their inputs, like ai_service.imaging: imports nothing of ai_service but ai_service.errors,
ai_service.imaging and itself (no Flask, no settings; limits arrive as `MeshLimits`). trimesh (the `3d` extra) is
imported by `load` and `export` only, so sniffing stays cheap.

Modules (import them directly):

- errors: the decode errors, each with its stable code (ai_service.errors has the statuses)
- limits: `MeshLimits`, the bounds every upload is checked against
- sniff: which 3D format some bytes are, from their content alone
- preflight: vertex, face and node counts read from headers before any mesh is built, external references refused
- archive: a zip of a model and its files, unpacked into memory within size and ratio bounds
- load: bytes -> `Model` (scene flattened with its transforms, resolver confined to the upload)
- facts: counts, bounds, area, volume, materials, textures, units
- render: a z-buffered numpy rasteriser: lit, shaded, transparent PNG views without a GPU or display
- export: GLB, OBJ (zipped with its MTL and textures), STL, PLY
"""
