"""The upload and status pages in a real browser: Playwright driving Debian's chromium against a live server.

Screenshots land in test-artifacts/screenshots/. Without /usr/bin/chromium (or Playwright) the module skips
locally and fails under CI=true. Every page is checked for console errors, so a Content-Security-Policy
violation (inline script or style) fails the test that caused it.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    PHONE,
    checked_page,
    file_payload,
    launch_for_screenshots,
    live_app_server,
    open_page,
    seven_variants,
    shot,
)
from conftest import encode
from PIL import Image

MAX_UPLOAD_MB = 2
MAX_FILES = 2  # small, so three files exercise the page's splitting into several requests


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The real app (plus test-double models) on a free 127.0.0.1 port, served from a thread."""
    yield from live_app_server(
        tmp_path_factory, "browser", doubles=True, max_upload_mb=MAX_UPLOAD_MB, max_files=MAX_FILES
    )


@pytest.fixture
def page(browser, live_server):
    """A fresh scripted page on the upload form, ready once app.js has wired it up."""
    yield from checked_page(browser, live_server, accept_downloads=True)


@pytest.fixture(scope="module")
def seven(digits_split) -> dict[str, tuple[bytes, str]]:
    return seven_variants(digits_split)


def run_and_wait(page, count: int = 1) -> None:
    """Press Run and wait for this run's results (the page numbers its runs on #results)."""
    previous = int(page.get_attribute("#results", "data-run") or 0)
    page.click("#run")
    page.locator(f"#results[data-run='{previous + 1}']").wait_for(state="attached")
    page.locator("#results .result-item").nth(count - 1).wait_for()


def cutout_png() -> bytes:
    """A red disc on a transparent canvas: alpha that a checkerboard makes visible."""
    Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    yy, xx = np.mgrid[0:90, 0:120]
    inside = (xx - 60) ** 2 + (yy - 45) ** 2 < 35**2
    pixels = np.zeros((90, 120, 4), np.uint8)
    pixels[inside] = (220, 40, 40, 255)
    return encode(Image.fromarray(pixels, "RGBA"))


def test_upload_png_with_alpha_shows_ranked_scores(page, seven):
    page.set_input_files("#file", files=[file_payload("seven.png", seven["alpha.png"][0], "image/png")])
    card = page.locator(".file-card")
    card.wait_for()
    assert "64×64" in card.inner_text() and "PNG" in card.inner_text()
    assert "checker" in card.locator(".thumb img").get_attribute("class")  # behind the image's own box (issue 17)
    run_and_wait(page)
    result = page.locator("#results .result-item").first
    assert result.locator(".bars li.top .label").inner_text() == "7"
    assert len(result.locator(".bars li").all()) == 3
    page.click("#results details summary")
    details = page.locator("#results details").inner_text()
    assert re.search(r"Request id\s+[0-9a-f]{32}", details) and "Server forward" in details
    page.locator("#history .history-entry").first.wait_for()
    assert "7 (" in page.locator("#history").inner_text()
    shot(page, "upload-alpha-png")


def test_progress_is_shown_while_a_request_runs(page, seven):
    held = []
    page.route("**/api/v1/predict", lambda route: held.append(route))  # held until the page has been inspected
    page.set_input_files("#file", files=[file_payload("seven.png", seven["gray.png"][0], "image/png")])
    page.locator(".file-card").wait_for()
    page.click("#run")
    page.locator("#progress:not([hidden])").wait_for()
    assert page.is_disabled("#run") and page.get_attribute("#predict-form", "aria-busy") == "true"
    assert page.get_attribute("#progress", "role") == "status" and page.inner_text("#progress-text")
    shot(page, "progress")
    assert len(held) == 1
    held[0].continue_()
    page.locator("#results .result-item").wait_for()
    assert page.inner_text("#progress-text").startswith("Done in") and not page.is_disabled("#run")


def test_drag_and_drop_adds_files_and_predicts(page, seven):
    payload = base64.b64encode(seven["gray.png"][0]).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped-seven.png", { type: "image/png" }));
        return transfer;
    }""",
        payload,
    )
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": transfer})
    assert "dragging" in page.get_attribute("#dropzone", "class")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    page.locator(".file-card", has_text="dropped-seven.png").wait_for()
    assert "dragging" not in page.get_attribute("#dropzone", "class")
    run_and_wait(page)
    assert page.locator("#results .bars li.top .label").first.inner_text() == "7"


def test_paste_from_clipboard_and_several_files_at_once(page, seven):
    payload = base64.b64encode(seven["color.jpg"][0]).decode()
    page.evaluate(
        """(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "image.jpg", { type: "image/jpeg" }));
        document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }));
    }""",
        payload,
    )
    page.locator(".file-card", has_text="pasted-1.jpg").wait_for()
    page.set_input_files(
        "#file",
        files=[
            file_payload("gray.png", seven["gray.png"][0], "image/png"),
            file_payload("inverted.png", seven["inverted.png"][0], "image/png"),
        ],
    )
    page.locator(".file-card").nth(2).wait_for()
    assert page.inner_text("#run") == "Run on 3 images"
    run_and_wait(page, 3)
    labels = page.locator("#results .result-item .bars li.top .label").all_inner_texts()
    assert labels == ["7", "7", "7"]
    assert page.locator("#results details summary").all_inner_texts() == [
        "Request 1 of 2: details (2 images)",
        "Request 2 of 2: details",
    ]
    request_ids = {
        re.search(r"Request id\s*([0-9a-f]{32})", text).group(1)
        for text in page.locator("#results details").all_text_contents()
    }
    assert len(request_ids) == 2, "three files at max_files=2 go out as two requests"
    shot(page, "several-files")


def test_draw_a_digit_on_the_canvas(page):
    page.select_option("#model", "digits")
    canvas = page.locator("#digit-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])  # noqa: E731
    stroke = [at(0.25, 0.2), at(0.75, 0.2), at(0.62, 0.45), at(0.5, 0.65), at(0.42, 0.85)]  # a seven
    page.mouse.move(*stroke[0])
    page.mouse.down()
    for x, y in stroke[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.wait_for_selector("#draw-result .big-digit")
    page.locator("#digit-canvas:not([aria-busy])").wait_for()
    assert page.inner_text("#draw-result .big-digit") == "7"
    assert len(page.locator("#draw-result .bars li").all()) == 3
    shot(page, "draw-digit")
    page.click("#clear-canvas")
    assert page.locator("#draw-result .big-digit").count() == 0


def test_text_file_gets_a_clear_message(page):
    page.set_input_files("#file", files=[file_payload("notes.txt", b"just some text\n", "text/plain")])
    alert = page.locator("#file-messages .alert")
    alert.wait_for()
    assert "notes.txt is not an image" in alert.inner_text() and "text/plain" in alert.inner_text()
    assert "invalid" in page.get_attribute(".file-card", "class")
    page.click("#run")
    assert "None of the chosen files can be sent" in page.inner_text("#file-messages")
    assert page.locator("#results .result-item").count() == 0
    shot(page, "text-file-refused")


def test_too_large_file_is_refused_before_upload(page):
    big = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_MB * 1024 * 1024 + 10)
    page.set_input_files("#file", files=[file_payload("huge.png", big, "image/png")])
    alert = page.locator("#file-messages .alert")
    alert.wait_for()
    assert f"the limit is {MAX_UPLOAD_MB}.0 MB per upload" in alert.inner_text()


def test_server_rejection_message_is_shown(page):
    broken_tiff = b"II*\x00" + b"\x08\x00\x00\x00" + b"\xff" * 64  # passes the browser's sniffing, not the decoder
    page.set_input_files("#file", files=[file_payload("broken.tif", broken_tiff, "image/tiff")])
    page.locator(".file-card", has_text="TIFF").wait_for()
    run_and_wait(page)
    message = page.locator("#results .result-item.failed .alert").inner_text()
    assert message and "broken.tif" in page.inner_text("#results")
    assert message in page.inner_text(".file-card .file-error")  # the file card shows the server's reason too
    shot(page, "server-rejection")


def test_image_output_has_comparison_slider_and_download(page):
    page.select_option("#model", "negative")
    assert page.is_visible("#output_format") and not page.is_visible("#top_k")
    page.set_input_files("#file", files=[file_payload("disc.png", cutout_png(), "image/png")])
    page.locator(".file-card").wait_for()
    run_and_wait(page)
    compare = page.locator("#results .compare")
    compare.wait_for()
    slider = compare.locator("input[type=range]")
    slider.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert compare.evaluate("el => el.style.getPropertyValue('--split')") == "60%"
    with page.expect_download() as download_info:
        page.click("#results a[download]")
    download = download_info.value
    assert download.suggested_filename == "disc-negative.png"
    output = Image.open(io.BytesIO(Path(download.path()).read_bytes()))
    assert output.mode == "RGBA" and output.size == (120, 90)
    assert output.getpixel((60, 45)) == (35, 215, 215, 255) and output.getpixel((0, 0))[3] == 0
    shot(page, "image-to-image-compare")
    page.select_option("#model", "upscale-2x")  # a built-in whose output is larger than its input
    page.select_option("#output_format", "webp")
    run_and_wait(page)
    page.locator("#results .output-actions", has_text="240×180").wait_for()
    assert "WEBP" in page.inner_text("#results .output-actions")
    assert page.get_attribute("#results a[download]", "download") == "disc-upscale-2x.webp"
    page.locator("#history .history-entry").nth(1).locator("button").click()  # the first run, shown again
    assert page.get_attribute("#results a[download]", "download") == "disc-negative.png"


def test_background_color_reaches_the_background_remover(page):
    square = np.full((60, 80, 3), 255, np.uint8)
    square[20:40, 20:40] = (220, 30, 30)
    page.select_option("#model", "remove-bg")
    assert page.is_disabled("#background")
    page.set_input_files("#file", files=[file_payload("square.png", encode(Image.fromarray(square)), "image/png")])
    page.locator(".file-card").wait_for()
    run_and_wait(page)
    cut = Image.open(io.BytesIO(download_bytes(page)))
    assert cut.mode == "RGBA" and cut.getpixel((0, 0))[3] == 0 and cut.getpixel((30, 30)) == (220, 30, 30, 255)
    page.select_option("#background_mode", "color")
    page.fill("#background", "#00ff00")
    run_and_wait(page)
    flat = Image.open(io.BytesIO(download_bytes(page)))
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (0, 255, 0)
    shot(page, "remove-background")


def download_bytes(page) -> bytes:
    with page.expect_download() as info:
        page.click("#results a[download]")
    return Path(info.value.path()).read_bytes()


def test_detection_boxes_and_masks_drawn_over_the_input(page):
    page.select_option("#model", "inkbox")
    page.set_input_files("#file", files=[file_payload("disc.png", cutout_png(), "image/png")])
    page.locator(".file-card").wait_for()
    run_and_wait(page)
    rect = page.locator("#results svg.boxes rect")
    assert (rect.get_attribute("x"), rect.get_attribute("y"), rect.get_attribute("width")) == ("26", "11", "69")
    assert "ink 90.0%" in page.inner_text("#results .box-label")
    shot(page, "detection-boxes")
    page.select_option("#model", "alphamask")
    run_and_wait(page)
    page.locator("#results img.mask-overlay").wait_for()
    page.fill("#results input[type=range]", "90")
    assert (
        page.locator("#results .overlay-frame").evaluate("el => el.style.getPropertyValue('--mask-opacity')") == "0.9"
    )


def test_form_works_without_javascript(browser, live_server, seven):
    context, page = open_page(browser, live_server, ready=False, accept_downloads=True, java_script_enabled=False)
    assert page.is_visible("#file") and not page.is_visible("#draw-panel")
    page.set_input_files("#file", files=[file_payload("seven.png", seven["alpha.png"][0], "image/png")])
    page.select_option("#model", "digits")
    page.click("#run")
    page.wait_for_url(live_server + "/predict")
    assert page.inner_text("h1").startswith("Result: digits")
    assert page.inner_text(".bars li.top .label") == "7"
    assert page.locator("img.checker[src^='data:image/png;base64,']").count() == 1
    shot(page, "no-js-result")
    page.goto(live_server + "/?model=negative")
    page.set_input_files("#file", files=[file_payload("disc.png", cutout_png(), "image/png")])
    page.select_option("#output_format", "jpeg")
    page.click("#run")
    page.wait_for_url(live_server + "/predict")
    assert page.get_attribute("a[download]", "download") == "disc-negative.jpg"
    assert page.get_attribute(".before-after figure:nth-child(2) img", "src").startswith("data:image/jpeg;base64,")
    shot(page, "no-js-image-result")
    context.close()


def open_chooser_with_space(page, attempts: int = 3):
    """Space on the focused file input opens the picker; on a loaded CI machine chromium has dropped
    that first key press once in many runs, so a press that opens nothing within 5 s is repeated."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        try:
            with page.expect_file_chooser(timeout=5000) as chooser:
                page.keyboard.press("Space")
            return chooser.value
        except PlaywrightTimeout:
            assert page.evaluate("document.activeElement.id") == "file", "focus left the file input"
            if attempt == attempts - 1:
                raise


def test_phone_width_keyboard_and_focus(browser, live_server, seven):
    context, page = open_page(
        browser, live_server, viewport=PHONE, is_mobile=True, has_touch=True, accept_downloads=True
    )
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file":
            break
    assert page.evaluate("document.activeElement.id") == "file", "the file input is reachable with Tab"
    outline = page.evaluate("getComputedStyle(document.getElementById('dropzone')).outlineStyle")
    assert outline == "solid", "the drop zone shows focus"
    chooser = open_chooser_with_space(page)
    assert chooser.is_multiple()
    chooser.set_files(files=[file_payload("seven.png", seven["alpha.png"][0], "image/png")])
    page.locator(".file-card").wait_for()
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "run":
            break
    page.keyboard.press("Enter")
    page.locator("#results .result-item").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the page scrolls sideways on a phone"
    shot(page, "phone-375")
    context.close()


def test_status_page_shows_device_and_model_memory(browser, live_server, seven):
    context, page = open_page(browser, live_server, None, accept_downloads=True)
    page.request.post(
        live_server + "/api/v1/predict",
        multipart={
            "file": file_payload("seven.png", seven["gray.png"][0]),
            "model": "digits",
        },
    )
    page.goto(live_server + "/status")
    assert "cpu" in page.inner_text(".stat-grid")
    row = page.locator("tr", has=page.locator("th", has_text=re.compile(r"^\s*digits(@\S+)?(\s|$)")))
    assert "loaded" in row.inner_text() and "KiB" in row.inner_text()
    shot(page, "status")
    assert "loaded" not in page.locator("tr", has=page.locator("th", has_text="edges")).inner_text()
    page.request.post(
        live_server + "/api/v1/predict",
        multipart={"file": file_payload("disc.png", cutout_png()), "model": "edges"},
    )
    page.uncheck("#auto-refresh")
    page.check("#auto-refresh")  # refreshes at once, without waiting for the 5 s tick
    page.locator("tr", has=page.locator("th", has_text="edges")).locator(".state-loaded").wait_for()
    context.close()


CONTRAST_SCRIPT = """(selectors) => {
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    const rgba = (text) => text.match(/[\\d.]+/g).map(Number);
    const background = (node) => {
        for (; node; node = node.parentElement) {
            const color = rgba(getComputedStyle(node).backgroundColor);
            if (color.length < 4 || color[3] > 0.5) return color;
        }
        return [255, 255, 255];
    };
    const worst = [];
    for (const selector of selectors) {
        for (const node of document.querySelectorAll(selector)) {
            if (!node.offsetParent || !node.textContent.trim()) continue;
            const [a, b] = [luminance(rgba(getComputedStyle(node).color)), luminance(background(node))];
            const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
            if (ratio < 4.5) worst.push(`${selector}: ${ratio.toFixed(2)} (${node.textContent.trim().slice(0, 30)})`);
        }
    }
    return worst;
}"""


def test_text_contrast_meets_wcag_aa(page, seven):
    """Every kind of text on the page (muted hints, badges, buttons, links, bars, alerts) reaches 4.5:1."""
    page.set_input_files(
        "#file",
        files=[
            file_payload("seven.png", seven["alpha.png"][0], "image/png"),
            file_payload("notes.txt", b"text", "text/plain"),
        ],
    )
    page.locator(".file-card").nth(1).wait_for()
    run_and_wait(page)
    page.click("#results details summary")
    selectors = [
        "body",
        "h1",
        "h2",
        "h3",
        "p",
        "label",
        "legend",
        "a",
        "button",
        ".muted",
        ".hint",
        ".badge",
        ".state",
        ".alert",
        ".file-meta",
        ".file-error",
        ".bars .label",
        ".bars .score",
        ".detail-list dt",
        ".detail-list dd",
        ".site-header a",
        ".site-footer",
        ".dropzone-text",
        "kbd",
        "time",
        "option",
        "select",
        "input",
    ]
    assert page.evaluate(CONTRAST_SCRIPT, selectors) == []
