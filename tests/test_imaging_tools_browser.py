"""The Tools page in a real browser (Playwright + Debian's chromium): convert, download, errors, no-JS form."""

from __future__ import annotations

import imaging_samples as S
import numpy as np
import pytest
from browser_support import close_checked, file_payload, launch_chromium, live_app_server, open_page

from ai_service.imaging.io import decode_image

TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "tools")


def white_with_red_square() -> bytes:
    arr = np.full((60, 80, 3), 255, np.uint8)
    arr[20:40, 20:40] = (220, 30, 30)
    return S.encode(arr, "PNG")


def _page(browser, base: str, javascript: bool = True):
    """The Tools page (at Playwright's default viewport), waited for when scripted; (context, page, its errors)."""
    context, page = open_page(
        browser,
        base,
        "/tools",
        ready="html[data-tools-ready]" if javascript else False,
        timeout_ms=TIMEOUT_MS,
        viewport={"width": 1280, "height": 720},  # Playwright's default
        accept_downloads=True,
        java_script_enabled=javascript,
    )
    return context, page, page.console_errors


def test_convert_and_download_with_javascript(browser, base, tmp_path) -> None:
    context, page, _ = _page(browser, base)
    page.set_input_files("#tools-file", files=[file_payload("square.png", white_with_red_square())])
    page.check("input[name=key_enabled]")
    page.fill("#key_tolerance", "5")
    page.fill("#width", "40")
    page.click("#tools-run")
    page.wait_for_selector("#tools-download")
    assert "40×30" in page.inner_text("#tools-meta")
    assert page.get_attribute("#tools-output", "src").startswith("blob:")
    with page.expect_download() as info:
        page.click("#tools-download")
    download = info.value
    assert download.suggested_filename == "square-converted.png"
    path = tmp_path / "out.png"
    download.save_as(path)
    out = np.asarray(decode_image(path.read_bytes()))
    assert out.shape == (30, 40, 4) and out[2, 2, 3] == 0 and out[15, 15, 3] == 255
    close_checked(context, page)


def test_bad_parameter_message_names_it(browser, base) -> None:
    context, page, errors = _page(browser, base)
    page.set_input_files("#tools-file", files=[file_payload("a.png", white_with_red_square())])
    page.click("summary")
    page.fill("#operations", '[{"op": "blur"}]')
    page.click("#tools-run")
    page.wait_for_selector("#tools-error:not([hidden])")
    assert "operations[0].op" in page.inner_text("#tools-error")
    context.close()
    assert not [e for e in errors if "Failed to load resource" not in e and "422" not in e], errors


def test_form_works_without_javascript(browser, base) -> None:
    context, page, _ = _page(browser, base, javascript=False)
    page.set_input_files("#tools-file", files=[file_payload("a.png", white_with_red_square())])
    page.check("input[name=gray_enabled]")
    page.select_option("#format", "jpeg")
    page.click("#tools-run")
    page.wait_for_selector("#tools-download")
    assert (
        "JPEG" in page.inner_text("#tools-meta")
        and page.get_attribute("#tools-download", "download") == "a-converted.jpg"
    )
    context.close()
