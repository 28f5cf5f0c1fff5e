"""The one definition of a model reference (`name` or `name@version`): ModelInfo checks names and versions with it,
the request schemas and the OpenAPI document validate refs with it, so whatever can be registered can be addressed.

Stdlib only: the schemas (and so the client) import it without torch.
"""

from __future__ import annotations

import re
from typing import Final

#: Longest name, and longest version, of a model.
MAX_PART_LENGTH: Final = 100
#: A name or a version: a letter or digit, then letters, digits, '.', '_', '+' or '-' (semver build tags: 1.0+local).
PART: Final = rf"[A-Za-z0-9][A-Za-z0-9._+-]{{0,{MAX_PART_LENGTH - 1}}}"
PART_PATTERN: Final = re.compile(rf"^{PART}$")
#: `name` (its newest version) or `name@version`.
MODEL_REF_PATTERN: Final = rf"^{PART}(@{PART})?$"
#: What a character outside PART becomes in a display name built from something else (a plugin's file name).
UNSAFE_CHARACTERS: Final = re.compile(r"[^A-Za-z0-9._+-]")


def is_valid_part(value: str) -> bool:
    """True when `value` can be a model's name or version."""
    return PART_PATTERN.match(value) is not None
