"""Mesh decode errors: each subclass carries the stable code the API answers with (statuses in ai_service.errors)."""

from __future__ import annotations

from ai_service.errors import ServiceError


class MeshError(ServiceError, ValueError):
    """Bytes that cannot become a mesh; the message is written for the person who sent them."""

    code = "invalid_mesh"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(self.code, message, details)


class UnsupportedMeshError(MeshError):
    """The bytes are no 3D format we read."""

    code = "unsupported_format"


class MeshTooLargeError(MeshError):
    """More vertices, faces, nodes or unpacked bytes than the limits allow (checked before building)."""

    code = "mesh_too_large"


class UnsafeMeshError(MeshError):
    """A reference to a file or URL outside the upload."""

    code = "unsafe_mesh"
