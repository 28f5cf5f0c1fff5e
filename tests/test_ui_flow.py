"""Issue 17, defects a first-time visitor hits on the upload page: one Playwright test each, in Debian's chromium.

History entries that outlive "Clear images", results brought into view and focused, honest file messages,
damaged files without a broken preview, options checked in the form, tidy status lines, thumbnails without a
fake transparent border, distinct request ids under the drawing, a pixel-limit warning before sending, and a
zoom / full-size view of large outputs. Screenshots land in test-artifacts/screenshots/ui-*.png.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from browser_support import file_payload, launch_for_screenshots, live_app_server, open_page, shot
from conftest import encode
from PIL import Image

MAX_PIXELS = 2_000_000  # small, so a modest image exceeds it


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "ui-flow", doubles=True, max_pixels=MAX_PIXELS)


@pytest.fixture
def page(browser, live_server):
    context, page = open_page(browser, live_server, viewport={"width": 1280, "height": 800})
    yield page
    context.close()


def photo(width: int = 160, height: int = 120) -> bytes:
    """An opaque color gradient: no pixel is transparent."""
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    return encode(Image.fromarray(pixels, "RGB"))


def cutout() -> bytes:
    """A red disc on a transparent canvas."""
    yy, xx = np.mgrid[0:90, 0:120]
    pixels = np.zeros((90, 120, 4), np.uint8)
    pixels[(xx - 60) ** 2 + (yy - 45) ** 2 < 35**2] = (220, 40, 40, 255)
    return encode(Image.fromarray(pixels, "RGBA"))


def add_files(page, *files: dict) -> None:
    before = page.locator(".file-card").count()
    page.set_input_files("#file", files=list(files))
    page.locator(".file-card").nth(before + len(files) - 1).wait_for()


def run_and_wait(page, count: int = 1) -> None:
    previous = int(page.get_attribute("#results", "data-run") or 0)
    page.click("#run")
    page.locator(f"#results[data-run='{previous + 1}']").wait_for(state="attached")
    page.locator("#results .result-item").nth(count - 1).wait_for()


VISIBLE_TEXT_COUNT = """(text) => Array.from(document.querySelectorAll("#file-messages *, #file-list *"))
    .filter((node) => node.children.length === 0 && node.textContent.includes(text))
    .filter((node) => node.offsetWidth > 1 && node.offsetHeight > 1 && node.checkVisibility()).length"""


def image_decodes(page, selector: str) -> int:
    """naturalWidth of the image once it has loaded (0 when its source is gone, e.g. a revoked blob: URL)."""
    return page.eval_on_selector(selector, "img => img.decode().then(() => img.naturalWidth, () => 0)")


# 1 ------------------------------------------------------------------------------------------------------------
def test_history_show_after_clear_images_still_has_the_before_image(page):
    page.select_option("#model", "negative")
    add_files(page, file_payload("disc.png", cutout(), "image/png"))
    run_and_wait(page)
    page.locator("#history .history-entry").first.wait_for()
    page.click("#clear-files")
    assert page.locator(".file-card").count() == 0
    page.locator("#history .history-entry").first.get_by_role("button", name=re.compile("Show")).click()
    page.locator("#results .compare img.before").wait_for()
    assert image_decodes(page, "#results .compare img.before") == 120, "the Before image of a history entry is broken"
    assert image_decodes(page, "#results .compare img.after") == 120
    assert not [e for e in page.console_errors if "ERR_FILE_NOT_FOUND" in e]
    shot(page, "ui-history-after-clear")


# 2 ------------------------------------------------------------------------------------------------------------
def test_run_brings_the_result_into_view_and_focuses_it(page):
    add_files(page, file_payload("photo.png", photo(), "image/png"))
    page.locator("#run").scroll_into_view_if_needed()
    page.click("#run")
    page.locator("#results .result-item").first.wait_for()
    page.wait_for_function(
        """() => {
        const active = document.activeElement;
        const item = document.querySelector('#results .result-item');
        const box = item.getBoundingClientRect();
        const inView = box.top >= -1 && box.top < innerHeight - 80;
        return active && active !== document.body && active.closest('#results') && inView;
    }""",
        timeout=5000,
    )
    focused = page.evaluate("document.activeElement.getAttribute('aria-label') || document.activeElement.id")
    assert focused == "Result for photo.png"
    shot(page, "ui-result-focused-1280")


# 4 ------------------------------------------------------------------------------------------------------------
def test_not_an_image_message_is_honest_and_shown_once(page):
    add_files(page, file_payload("notimage.png", b"plain words, no pixels", "image/png"))
    error = page.inner_text(".file-card .file-error")
    assert "(it is image/png)" not in error, "the browser's guess from the name is not the content"
    assert error.startswith("notimage.png is not an image") and "content" in error
    assert page.evaluate(VISIBLE_TEXT_COUNT, "notimage.png is not an image") == 1, "the refusal is written twice"
    assert page.locator("#file-messages [role=alert]", has_text="notimage.png").count() == 1  # still announced
    shot(page, "ui-not-an-image")


# 5 ------------------------------------------------------------------------------------------------------------
def test_damaged_jpeg_shows_no_preview_instead_of_a_broken_image(page):
    good = encode(Image.open(io.BytesIO(photo())).convert("RGB"), "JPEG")
    damaged = good[:200] + bytes(b ^ 0x5A for b in good[200:])  # a valid header, then noise
    add_files(page, file_payload("corrupt2.jpg", damaged, "image/jpeg"))
    card = page.locator(".file-card", has_text="corrupt2.jpg")
    assert card.locator("img").count() == 0, "a broken-image icon labelled 'Preview of corrupt2.jpg'"
    assert card.locator(".thumb-placeholder").inner_text() == "No preview"
    assert "could not be decoded" in card.inner_text()
    shot(page, "ui-damaged-jpeg")


# 6 ------------------------------------------------------------------------------------------------------------
def test_invalid_option_is_caught_next_to_its_field_and_never_sent(page):
    sent = []
    page.on("request", lambda request: sent.append(request.url) if "/api/v1/predict" in request.url else None)
    add_files(page, file_payload("photo.png", photo(), "image/png"))
    page.fill("#top_k", "0")
    page.click("#run")
    note = page.locator(".option[data-option=top_k] .field-error")
    note.wait_for()
    assert note.inner_text() == "Top predictions must be between 1 and 20."
    assert page.get_attribute("#top_k", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "top_k"
    assert page.locator("#results .result-item").count() == 0 and not sent
    shot(page, "ui-option-invalid")
    page.fill("#top_k", "3")
    assert note.count() == 0, "the message goes once the value is valid"


def test_option_refused_by_the_server_is_named_by_its_label_not_on_the_image(page):
    add_files(page, file_payload("photo.png", photo(), "image/png"))
    page.eval_on_selector("#top_k", "input => input.removeAttribute('min')")  # as if the form's rules were stale
    page.fill("#top_k", "0")
    page.click("#run")
    page.locator("#results[data-run='1']").wait_for(state="attached")
    note = page.locator(".option[data-option=top_k] .field-error")
    assert "Top predictions" in note.inner_text() and "top_k" not in note.inner_text()
    assert "top_k" not in page.inner_text("#results") and "Top predictions" in page.inner_text("#results")
    assert page.locator(".file-card.invalid").count() == 0, "the image itself was fine"
    assert page.locator("#results .result-item").count() == 0


# 7 ------------------------------------------------------------------------------------------------------------
def test_status_line_has_one_full_stop_and_forgets_the_last_run_when_blocked(page):
    broken_tiff = b"II*\x00" + b"\x08\x00\x00\x00" + b"\xff" * 64  # passes the browser's sniffing, not the decoder
    add_files(page, file_payload("broken.tif", broken_tiff, "image/tiff"))
    run_and_wait(page)
    status = page.inner_text("#progress-text")
    assert status.startswith("Finished with 1 error") and ".." not in status, status
    page.click("#clear-files")
    page.click("#run")  # blocked: no image
    assert page.is_hidden("#progress") or "Finished" not in page.inner_text("#progress-text")
    add_files(page, file_payload("photo.png", photo(), "image/png"))
    run_and_wait(page, 1)
    page.fill("#top_k", "25")
    page.click("#run")  # blocked: an invalid option
    assert page.inner_text("#progress-text") == "Not sent: Top predictions must be between 1 and 20."


# 8 ------------------------------------------------------------------------------------------------------------
BOX_ASPECTS = """() => {
    const aspect = (selector) => {
        const box = document.querySelector(selector).getBoundingClientRect();
        return box.width / box.height;
    };
    return {
        cardBackground: getComputedStyle(document.querySelector('.file-card .thumb')).backgroundImage,
        card: aspect('.file-card .thumb img'),
        history: aspect('#history img'),
    };
}"""


def test_opaque_thumbnails_have_no_checkerboard_border(page):
    add_files(page, file_payload("tall.png", photo(60, 120), "image/png"))
    run_and_wait(page)
    page.locator("#history img").first.wait_for()
    page.wait_for_function("() => document.querySelector('#history img').complete")
    aspects = page.evaluate(BOX_ASPECTS)
    assert aspects["cardBackground"] == "none", "the card's padding is drawn as transparency"
    assert aspects["card"] == pytest.approx(0.5, abs=0.03), "the checkerboard box is wider than the image"
    assert aspects["history"] == pytest.approx(0.5, abs=0.05)
    shot(page, "ui-opaque-thumbnails")


# 9 ------------------------------------------------------------------------------------------------------------
def draw_seven(page) -> None:
    canvas = page.locator("#digit-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])  # noqa: E731
    stroke = [at(0.25, 0.2), at(0.75, 0.2), at(0.62, 0.45), at(0.5, 0.65), at(0.42, 0.85)]
    page.mouse.move(*stroke[0])
    page.mouse.down()
    for x, y in stroke[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def test_drawing_panel_shows_a_request_id_that_tells_requests_apart(page):
    page.select_option("#model", "digits")
    ids = []
    for _ in range(2):
        page.click("#clear-canvas")
        draw_seven(page)
        page.wait_for_selector("#draw-result .big-digit")
        page.locator("#digit-canvas:not([aria-busy])").wait_for()
        ids.append(re.search(r"request\s+(\S+)", page.inner_text("#draw-result .hint")).group(1))
    assert ids[0] != ids[1], f"both requests read the same: {ids}"
    assert all(re.fullmatch(r"[0-9a-f]{32}", text) for text in ids)
    shot(page, "ui-draw-request-id")


# 10 -----------------------------------------------------------------------------------------------------------
def test_image_over_the_pixel_limit_is_refused_before_sending_with_the_model_named(page):
    sent = []
    page.on("request", lambda request: sent.append(request.url) if "/api/v1/predict" in request.url else None)
    page.select_option("#model", "upscale-2x")
    add_files(page, file_payload("wide.png", photo(1600, 1500), "image/png"))
    error = page.inner_text(".file-card .file-error")
    assert "1600×1500 (2.4 megapixels)" in error and "upscale-2x takes at most 2.0 megapixels per image" in error
    page.select_option("#model", "negative")
    assert "negative takes at most 2.0 megapixels" in page.inner_text(".file-card .file-error")
    page.click("#run")
    assert "None of the chosen files can be sent" in page.inner_text("#file-messages") and not sent
    shot(page, "ui-pixel-limit")


def test_a_models_own_pixel_limit_is_checked_before_sending(page):
    """upscale-4x makes at most 24 megapixels, so it takes 1.5 at most: lower than the server's limit."""
    sent = []
    page.on("request", lambda request: sent.append(request.url) if "/api/v1/predict" in request.url else None)
    page.select_option("#model", "upscale-4x")
    add_files(page, file_payload("photo.png", photo(1300, 1200), "image/png"))
    error = page.locator(".file-card .file-error")
    error.wait_for()
    assert "1300×1200 (1.6 megapixels)" in error.inner_text()
    assert "upscale-4x takes at most 1.5 megapixels per image" in error.inner_text()
    page.click("#run")
    assert not sent
    page.select_option("#model", "upscale-2x")  # 6 megapixels of its own, 2 on this server: the photo fits
    assert page.locator(".file-card .file-error").count() == 0
    run_and_wait(page)
    assert len(sent) == 1


# 11 -----------------------------------------------------------------------------------------------------------
def test_large_output_can_be_zoomed_and_opened_full_size(page):
    page.select_option("#model", "upscale-2x")
    add_files(page, file_payload("photo.png", photo(600, 450), "image/png"))
    run_and_wait(page)
    toggle = page.get_by_role("button", name="Show the output for photo.png at actual size")
    toggle.wait_for()
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    frame = page.locator("#results .compare")
    assert frame.evaluate("el => el.getBoundingClientRect().width") == pytest.approx(1200, abs=1)
    assert page.locator("#results .zoom-view").evaluate("el => el.scrollWidth > el.clientWidth")
    shot(page, "ui-zoom-actual-size")
    with page.expect_popup() as popup_info:
        page.get_by_role("link", name="Open the output for photo.png at full size in a new tab").click()
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.evaluate("document.images[0].naturalWidth") == 1200
    toggle.click()
    assert frame.evaluate("el => el.getBoundingClientRect().width") < 700
