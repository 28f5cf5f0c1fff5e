"""The app's Flask class: Flask, minus a per-request cost that nothing in this app needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

#: More distinct functions than any app registers; past it (functions made per call) nothing more is remembered.
MAX_REMEMBERED = 4096


class ServiceFlask(Flask):
    """Flask asks `ensure_sync` about every hook and view on every request (~10 per request here), and each answer
    inspects the function's code flags; a function's answer never changes, so it is worked out once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable, Callable] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        try:
            return self._synced[func]
        except (KeyError, TypeError):  # TypeError: an unhashable callable, never remembered
            synced = super().ensure_sync(func)
        if len(self._synced) < MAX_REMEMBERED:
            try:
                self._synced[func] = synced
            except TypeError:
                pass
        return synced
