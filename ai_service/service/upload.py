"""`Upload`, the service layer's input type, in a module without torch so that HTTP parsing can build it cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Upload:
    """One uploaded image as received: its bytes and the client's name for it (display only)."""

    data: bytes
    filename: str = ""
