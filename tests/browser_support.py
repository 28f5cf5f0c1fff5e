"""What the browser tests share: one way to start Debian's chromium (a failure under CI=true, a skip elsewhere),
screenshots, pages that record console errors, and the app on a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import digit_variants
from databases import unavailable
from live_server import serve
from web_doubles import register_doubles

from ai_service import create_app

if TYPE_CHECKING:
    from flask import Flask
    from playwright.sync_api import Browser, BrowserContext, Page

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
    unavailable(reason, "browser")


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


# ---- what the browser test modules share: screenshots, pages that record console errors, a live server ---------

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
TIMEOUT_MS = 30_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
READY = "html[data-ready]"
#: Console lines that are no error of the page: a 404 the test asked for, or one of a polled resource.
EXPECTED_CONSOLE = "Failed to load resource"


def launch_for_screenshots(*extra_args: str) -> Iterator[Browser]:
    """launch_chromium_with() once SCREENSHOTS exists, so shot() can write there; use inside a fixture."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield from launch_chromium_with(*extra_args)


def quiet_app(home: Path, *, doubles: bool = False, **settings: object) -> Flask:
    """The real app on `home` with warnings only and no log file, so a test run leaves nothing behind; `doubles` adds
    the test-double models (one per task the page draws)."""
    app = create_app({"home": str(home), "log_level": "WARNING", "log_to_file": False, **settings})
    if doubles:
        register_doubles(app)
    return app


def live_app_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, *, doubles: bool = False, **settings: object
) -> Iterator[str]:
    """quiet_app() on a fresh temporary home, served on a free port for a real browser; yields the base URL."""
    with serve(quiet_app(tmp_path_factory.mktemp(name) / "home", doubles=doubles, **settings)) as base:
        yield base


def open_page(
    browser: Browser,
    base: str,
    path: str | None = "/",
    *,
    ready: bool | str = True,
    timeout_ms: int = TIMEOUT_MS,
    **context_options: object,
) -> tuple[BrowserContext, Page]:
    """A context (DESKTOP unless told) and page recording console errors in page.console_errors, so a CSP violation
    can fail the test; on base + path (None: nowhere yet), then waits for READY (True), that selector (a str) or not."""
    context = browser.new_context(**{"viewport": DESKTOP, **context_options})
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.console_errors = errors
    if path is not None:
        page.goto(base + path)
        if ready:
            page.wait_for_selector(READY if ready is True else ready)
    return context, page


def console_errors(page: Page) -> list[str]:
    """An open_page() page's console errors less the expected 404 lines, which are no fault of the page."""
    return [text for text in page.console_errors if EXPECTED_CONSOLE not in text]


def assert_no_console_errors(page: Page) -> None:
    """Fail the test whose page logged an error: a CSP violation (inline script or style) shows only there."""
    errors = console_errors(page)
    assert not errors, f"browser console errors: {errors}"


def close_checked(context: BrowserContext, page: Page) -> None:
    """Close the context and fail on the page's console errors; closed either way, so a failure leaks no context."""
    try:
        assert_no_console_errors(page)
    finally:
        context.close()


def checked_page(browser: Browser, base: str, path: str | None = "/", **options: object) -> Iterator[Page]:
    """For a `page` fixture: an open_page() page, closed after the test and failing it on console errors."""
    context, page = open_page(browser, base, path, **options)
    yield page
    close_checked(context, page)


def shot(page: Page, name: str) -> None:
    """Save the whole page as SCREENSHOTS/<name>.png, for a person to look at: what a passing test saw."""
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def file_payload(name: str, data: bytes, mime: str = "image/png") -> dict[str, object]:
    """A file as set_input_files() and request multipart take it, so tests upload bytes without writing files."""
    return {"name": name, "mimeType": mime, "buffer": data}


def seven_variants(digits_split) -> dict[str, tuple[bytes, str]]:
    """The first held-out 7 as every kind of upload (conftest.digit_variants): a digit every model must get right."""
    index = int(list(digits_split.test_labels).index(7))
    return digit_variants(digits_split.test_images[index])
