"""The service layer's input types (`Upload`, `Caller`), without torch so that HTTP parsing builds them cheaply."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property


@dataclass
class Upload:
    """One uploaded image as received: its bytes and the client's name for it (display only)."""

    data: bytes
    filename: str = ""
    #: PSD uploads: the one layer to read (a name, name path or index path; ai_service/imaging/psd.py), or None.
    layer: str | None = None
    #: PSD uploads without `layer`: "merged" (the flattened image stored) or "visible" (composited now).
    layers: str = "merged"

    @cached_property
    def sha256(self) -> str:
        """Hex digest of the bytes, once per upload: the result cache key and the history row both use it."""
        return hashlib.sha256(self.data).hexdigest()


#: Where a call came from, as history records it.
SOURCES = ("api", "web", "job", "cli")


@dataclass(frozen=True)
class Caller:
    """Who asked and through what, for the history: never a secret (API keys appear as their fingerprint)."""

    #: api, web, job or cli.
    source: str = "api"
    #: The request id of the access log line (or the job's / CLI run's id).
    request_id: str = ""
    #: "key:<fingerprint>", "ip:<address>", or the CLI user.
    client: str = ""
    #: The bulk job the images belong to.
    job_id: str | None = None
    #: Each image's place in its run, when the run spans many calls (a CLI run); empty: its place in this call.
    item_indexes: tuple[int, ...] = ()
