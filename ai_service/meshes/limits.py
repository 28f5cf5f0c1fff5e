"""The bounds a 3D upload is checked against before any mesh is built (set from AI_SERVICE_MESH_* settings)."""

from __future__ import annotations

from dataclasses import dataclass

from ai_service.meshes.errors import MeshTooLargeError

MIB = 1024 * 1024


@dataclass(frozen=True)
class MeshLimits:
    """What one model may declare; every count is the flattened scene's (instances counted once each)."""

    #: Bytes of the upload itself.
    max_bytes: int = 64 * MIB
    #: Vertices and triangles after the scene is flattened.
    max_vertices: int = 2_000_000
    max_faces: int = 2_000_000
    #: Scene nodes (and mesh instances) in a glTF.
    max_nodes: int = 10_000
    #: A zip: bytes once unpacked, members, and the largest unpacked/packed ratio of a member.
    max_unpacked_bytes: int = 256 * MIB
    max_members: int = 256
    max_ratio: float = 100.0
    #: Pixels of one texture image, read from its header before it is decoded.
    max_texture_pixels: int = 4096 * 4096

    def check_counts(self, vertices: int, faces: int, what: str) -> None:
        """Refuse counts over the limits, naming them (called with counts read from headers)."""
        if vertices > self.max_vertices or faces > self.max_faces:
            over = [f"{vertices:,} vertices"] if vertices > self.max_vertices else []
            over += [f"{faces:,} faces"] if faces > self.max_faces else []
            raise MeshTooLargeError(
                f"{what} declares {' and '.join(over)}; the limits are "
                f"{self.max_vertices:,} vertices and {self.max_faces:,} faces.",
                vertices=vertices,
                faces=faces,
                max_vertices=self.max_vertices,
                max_faces=self.max_faces,
            )

    def check_bytes(self, size: int, what: str) -> None:
        """Refuse an upload larger than `max_bytes`."""
        if size > self.max_bytes:
            raise MeshTooLargeError(
                f"{what} is {size / MIB:.1f} MB; the limit is {self.max_bytes / MIB:g} MB.",
                bytes=size,
                max_bytes=self.max_bytes,
            )
