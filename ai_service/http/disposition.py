"""Content-Disposition for files named after an upload: an ASCII `filename` every client reads, plus RFC 6266's
`filename*` (RFC 8187 UTF-8) when the name has other characters, so `数字.png` is saved as `数字-edges.png`."""

from __future__ import annotations

import re
from urllib.parse import quote

#: What the ASCII fallback keeps; anything else (non-ASCII, quotes, backslashes, controls) becomes `_`.
NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def content_disposition(kind: str, filename: str) -> str:
    """`kind` (inline or attachment) with the quoted ASCII fallback, then `filename*` when that lost characters."""
    fallback = NOT_ASCII_SAFE.sub("_", filename) or "download"
    header = f'{kind}; filename="{fallback}"'
    if fallback != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header
