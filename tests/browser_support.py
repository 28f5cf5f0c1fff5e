"""One way to start Debian's chromium for every browser test: a failure under CI=true, a skip elsewhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(reason: str) -> None:
    """Missing browser: a failure in CI, a skip on a developer machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


def launch_chromium() -> Iterator:
    """Yield a headless chromium browser (never downloaded), closed afterwards; use inside a fixture."""
    yield from launch_chromium_with()


def launch_chromium_with(*extra_args: str) -> Iterator:
    """launch_chromium() with more command-line switches (e.g. Chromium's fake camera for getUserMedia)."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*LAUNCH_ARGS, *extra_args])
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()
