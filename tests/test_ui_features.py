"""Issue 17, what the best demo UIs have: a large top label, elapsed time and Cancel, camera capture, crop and
rotate before running, and copying an output image to the clipboard (Playwright driving Debian's chromium).

The browser starts with Chromium's fake camera (a generated test pattern, permission granted without a prompt),
which changes nothing for the other features. Every page is checked for console errors, so a Content-Security-Policy
violation (inline script or style) fails the test that caused it. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    PHONE,
    close_checked,
    file_payload,
    launch_for_screenshots,
    live_app_server,
    open_page,
    seven_variants,
    shot,
)
from conftest import encode
from PIL import Image

FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots(*FAKE_CAMERA)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "ui-features", doubles=True)


@pytest.fixture(scope="module")
def seven(digits_split) -> dict[str, tuple[bytes, str]]:
    return seven_variants(digits_split)


class Session:
    """One browser context and page for the upload form, collecting console errors."""

    def __init__(self, browser, base: str, *, scheme: str = "light", script: bool = True, **options):
        self.base = base
        self.context, self.page = open_page(
            browser, base, None, color_scheme=scheme, java_script_enabled=script, accept_downloads=True, **options
        )

    def goto(self, path: str = "/"):
        self.page.goto(self.base + path)
        return self.page

    def open(self, path: str = "/"):
        """The scripted page, once app.js has wired it up."""
        self.goto(path).wait_for_selector("html[data-ready]")
        return self.page

    def close(self) -> None:
        close_checked(self.context, self.page)


@pytest.fixture
def session(browser, live_server):
    sessions: list[Session] = []

    def make(**options) -> Session:
        sessions.append(Session(browser, live_server, **options))
        return sessions[-1]

    yield make
    for item in sessions:
        item.close()


def run_and_wait(page, count: int = 1) -> None:
    previous = page.get_attribute("#results", "data-run") or "0"  # a cancelled run takes a number too
    page.click("#run")
    page.locator(f"#results[data-run]:not([data-run='{previous}'])").wait_for(state="attached")
    page.locator("#results .result-item").nth(count - 1).wait_for()


def quadrants_png(width: int = 80, height: int = 60) -> bytes:
    """Four opaque colored quadrants: red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[..., 3] = 255
    pixels[: height // 2, : width // 2, :3] = (255, 0, 0)
    pixels[: height // 2, width // 2 :, :3] = (0, 255, 0)
    pixels[height // 2 :, : width // 2, :3] = (0, 0, 255)
    pixels[height // 2 :, width // 2 :, :3] = (255, 255, 0)
    return encode(Image.fromarray(pixels, "RGBA"))


def no_sideways_scroll(page) -> None:
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"


# -- a large top label above the bars --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_top_label_is_large_and_above_the_bars(session, seven, scheme):
    page = session(scheme=scheme).open()
    page.set_input_files("#file", files=[file_payload("seven.png", seven["gray.png"][0])])
    page.locator(".file-card").wait_for()
    run_and_wait(page)
    label = page.locator("#results .top-label")
    assert label.locator(".top-label-name").inner_text() == "7"
    assert re.fullmatch(r"\d+\.\d%", label.locator(".top-label-score").inner_text())
    assert label.locator(".top-label-score").inner_text() == page.inner_text("#results .bars li.top .score")
    label_box, bars_box = label.bounding_box(), page.locator("#results .bars").bounding_box()
    assert label_box["y"] + label_box["height"] <= bars_box["y"] + 1, "the label sits above the bars"
    size = lambda selector: float(page.eval_on_selector(selector, "el => parseFloat(getComputedStyle(el).fontSize)"))  # noqa: E731
    assert size("#results .top-label-name") >= 2 * size("#results .bars li.top .label")
    shot(page, f"top-label-{scheme}")


def test_top_label_without_javascript(session, seven):
    page = session(script=False).goto("/")
    page.set_input_files("#file", files=[file_payload("seven.png", seven["gray.png"][0])])
    page.select_option("#model", "digits")
    page.click("#run")
    page.wait_for_url("**/predict")
    assert page.inner_text(".top-label .top-label-name") == "7"
    assert page.inner_text(".top-label .top-label-score") == page.inner_text(".bars li.top .score")
    assert not page.is_visible("#cancel-run") and not page.is_visible("#camera-open")
    shot(page, "top-label-no-js")


# -- copy the output image to the clipboard --------------------------------------------------------------------

READ_CLIPBOARD_PNG = """async () => {
  const items = await navigator.clipboard.read();
  const item = items.find((candidate) => candidate.types.includes("image/png"));
  if (!item) return null;
  const bytes = new Uint8Array(await (await item.getType("image/png")).arrayBuffer());
  let text = "";
  bytes.forEach((value) => { text += String.fromCharCode(value); });
  return btoa(text);
}"""


def clipboard_image(page) -> Image.Image:
    data = page.evaluate(READ_CLIPBOARD_PNG)
    assert data, "no PNG on the clipboard"
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_copy_output_image_to_the_clipboard(session, output_format):
    page = session(permissions=["clipboard-read", "clipboard-write"]).open("/?model=negative")
    page.select_option("#output_format", output_format)
    if output_format == "webp":
        page.fill("#quality", "100")
    page.set_input_files("#file", files=[file_payload("quads.png", quadrants_png())])
    page.locator(".file-card").wait_for()
    run_and_wait(page)
    actions = page.locator("#results .output-actions")
    copy = actions.locator("button.copy-image")
    download, copy_box = actions.evaluate(  # measured together: the page may still be scrolling to the result
        "el => ['a[download]', '.copy-image'].map((s) => el.querySelector(s).getBoundingClientRect().toJSON())"
    )
    assert abs(download["y"] - copy_box["y"]) < 4 and copy_box["x"] > download["x"], "Copy sits next to Download"
    copy.focus()
    page.keyboard.press("Enter")  # keyboard only
    actions.locator(".copy-status", has_text="Copied").wait_for()
    image = clipboard_image(page).convert("RGBA")
    assert image.size == (80, 60)
    tolerance = 0 if output_format == "png" else 12  # WebP at quality 100 is still lossy
    negatives = {(10, 10): (0, 255, 255), (70, 10): (255, 0, 255), (10, 50): (255, 255, 0), (70, 50): (0, 0, 255)}
    for point, expected in negatives.items():
        found = image.getpixel(point)[:3]
        assert all(abs(a - b) <= tolerance for a, b in zip(found, expected, strict=True)), (point, found)
    shot(page, f"copy-output-{output_format}")


def test_copy_mask_to_the_clipboard(session):
    page = session(permissions=["clipboard-read", "clipboard-write"]).open("/?model=alphamask")
    page.set_input_files("#file", files=[file_payload("quads.png", quadrants_png())])
    page.locator(".file-card").wait_for()
    run_and_wait(page)
    page.click("#results .output-actions button.copy-image")
    page.locator("#results .copy-status", has_text="Copied").wait_for()
    assert clipboard_image(page).size == (80, 60)


# -- elapsed time and Cancel while a request runs ---------------------------------------------------------------


def test_elapsed_time_and_cancel_abort_the_request(session, seven):
    page = session().open()
    held, failed = [], []
    page.route("**/api/v1/predict", lambda route: held.append(route))  # never answered: only Cancel ends it
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.set_input_files("#file", files=[file_payload("seven.png", seven["gray.png"][0])])
    page.locator(".file-card").wait_for()
    assert not page.is_visible("#cancel-run")
    page.focus("#run")
    page.keyboard.press("Enter")
    page.locator("#cancel-run:visible").wait_for()
    assert page.evaluate("document.activeElement.id") == "cancel-run", "Run is disabled: focus moves to Cancel"
    first = page.inner_text("#run-elapsed")
    page.wait_for_timeout(1300)
    later = page.inner_text("#run-elapsed")
    assert re.fullmatch(r"\d+\.\d s", first) and re.fullmatch(r"\d+\.\d s", later)
    assert float(later[:-2]) >= float(first[:-2]) + 1.0, (first, later)
    assert page.get_attribute("#run-elapsed", "aria-hidden") == "true"  # the clock does not flood the live region
    shot(page, "running-elapsed-cancel")
    page.keyboard.press("Enter")  # Cancel, keyboard only
    page.locator("#progress-text", has_text="Cancelled after").wait_for()
    assert re.fullmatch(r"Cancelled after \d+\.\d s\.", page.inner_text("#progress-text"))
    page.wait_for_function("() => document.activeElement.id === 'run'")
    assert not page.is_disabled("#run") and not page.is_visible("#cancel-run") and page.inner_text("#run-elapsed") == ""
    assert page.get_attribute("#predict-form", "aria-busy") is None
    assert page.locator("#results .result-item").count() == 0
    assert page.locator(".file-card.invalid").count() == 0, "a cancelled file is not marked as refused"
    deadline = time.monotonic() + 5
    while not failed and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert failed and failed[0][0].endswith("/api/v1/predict"), "the request itself was aborted"
    assert len(held) == 1
    page.unroute("**/api/v1/predict")
    run_and_wait(page)  # the form works again afterwards
    assert page.inner_text("#results .top-label-name") == "7"
    assert page.inner_text("#progress-text").startswith("Done in") and not page.is_visible("#cancel-run")


@pytest.fixture(scope="module")
def one_per_request(tmp_path_factory):
    """A server that takes one file per request, so two images make two requests."""
    yield from live_app_server(tmp_path_factory, "ui-features-one", max_files=1)


def test_cancel_keeps_the_requests_already_answered(browser, one_per_request, seven):
    current = Session(browser, one_per_request)
    page = current.open()
    seen = []

    def first_only(route):
        seen.append(route)
        if len(seen) == 1:
            route.continue_()  # the second request is held: Cancel ends it

    page.route("**/api/v1/predict", first_only)
    page.set_input_files(
        "#file",
        files=[file_payload("first.png", seven["gray.png"][0]), file_payload("second.png", seven["inverted.png"][0])],
    )
    page.locator(".file-card").nth(1).wait_for()
    page.click("#run")
    page.locator("#progress-text", has_text="Request 2 of 2").wait_for()
    page.click("#cancel-run")
    page.locator("#progress-text", has_text="Cancelled after").wait_for()
    assert "1 of 2 requests had finished; their results are shown." in page.inner_text("#progress-text")
    assert page.locator("#results .result-item").count() == 1 and "first.png" in page.inner_text("#results")
    page.locator("#history .history-entry").first.wait_for()
    assert page.locator("#history .history-entry").count() == 1
    assert page.locator(".file-card.invalid").count() == 0
    current.close()


def test_escape_cancels_a_running_request(session, seven):
    page = session(viewport=PHONE, is_mobile=True, has_touch=True, scheme="dark").open()
    page.route("**/api/v1/predict", lambda route: None)
    page.set_input_files("#file", files=[file_payload("seven.png", seven["gray.png"][0])])
    page.locator(".file-card").wait_for()
    page.click("#run")
    page.locator("#cancel-run:visible").wait_for()
    no_sideways_scroll(page)
    shot(page, "running-phone-dark")
    page.click(".file-card .edit-file")  # Escape in the crop editor closes the editor, not the request
    page.locator("dialog#editor").wait_for()
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('editor').open")
    assert page.is_visible("#cancel-run") and page.is_disabled("#run")
    page.keyboard.press("Escape")
    page.locator("#progress-text", has_text="Cancelled after").wait_for()
    assert not page.is_disabled("#run")


def test_server_retry_estimate_is_shown(session, seven):
    """A 503 (the model's queue is full) says when to retry: the page passes the server's estimate on."""
    page = session().open()
    body = '{"error": {"code": "overloaded", "message": "model digits has 64 images waiting (limit 64)"}}'
    answer = {"status": 503, "body": body, "content_type": "application/json", "headers": {"Retry-After": "7"}}
    page.route("**/api/v1/predict", lambda route: route.fulfill(**answer))
    page.set_input_files("#file", files=[file_payload("seven.png", seven["gray.png"][0])])
    page.locator(".file-card").wait_for()
    run_and_wait(page)
    message = page.inner_text("#results .result-item.failed .alert")
    assert message == "model digits has 64 images waiting (limit 64). The server suggests trying again in 7 s."


# -- camera capture ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_camera_frame_becomes_a_selected_file(session, scheme):
    """Chromium's fake camera (a generated test pattern) stands in for a webcam; keyboard only."""
    page = session(scheme=scheme).open("/?model=negative")
    open_button = page.locator("#camera-open")
    assert open_button.is_visible() and open_button.get_attribute("aria-expanded") == "false"
    open_button.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.id === 'camera-capture' && !document.activeElement.disabled")
    assert open_button.get_attribute("aria-expanded") == "true" and page.is_visible("#camera-video")
    size = page.eval_on_selector("#camera-video", "video => [video.videoWidth, video.videoHeight]")
    assert size[0] > 0 and size[1] > 0
    shot(page, f"camera-open-{scheme}")
    page.keyboard.press("Enter")  # Take photo
    card = page.locator(".file-card", has_text="camera-1.png")
    card.wait_for()
    assert f"{size[0]}×{size[1]}" in card.inner_text() and "PNG" in card.inner_text()
    page.keyboard.press("Enter")  # a second photo
    page.locator(".file-card", has_text="camera-2.png").wait_for()
    page.keyboard.press("Escape")  # closes the camera, focus back on its button
    page.wait_for_function("() => document.activeElement.id === 'camera-open'")
    assert page.evaluate("document.getElementById('camera-video').srcObject") is None
    assert not page.is_visible("#camera-panel")
    run_and_wait(page, 2)
    output = page.locator("#results .result-item").first
    assert "camera-1.png" in output.inner_text()
    shot(page, f"camera-result-{scheme}")


def test_camera_at_phone_width(session):
    page = session(viewport=PHONE, is_mobile=True, has_touch=True).open()
    page.click("#camera-open")
    page.locator("#camera-capture:enabled").wait_for()
    page.wait_for_function("() => document.getElementById('camera-video').videoWidth > 0")
    no_sideways_scroll(page)
    page.click("#camera-capture")
    page.locator(".file-card", has_text="camera-1.png").wait_for()
    no_sideways_scroll(page)
    shot(page, "camera-phone")
    page.click("#camera-close")


def test_camera_refused_says_why(session):
    current = session()
    refuse = "() => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'))"
    current.page.add_init_script(f"navigator.mediaDevices.getUserMedia = {refuse};")
    page = current.open()
    page.click("#camera-open")
    page.locator("#file-messages .alert", has_text="The camera is blocked").wait_for()
    assert not page.is_visible("#camera-panel") and not page.is_disabled("#camera-open")


def test_no_camera_button_without_a_camera_api(session):
    current = session()
    current.page.add_init_script("Object.defineProperty(navigator, 'mediaDevices', { value: undefined });")
    page = current.open()
    assert page.locator("#camera-open").count() == 0


# -- crop and rotate before running ------------------------------------------------------------------------------


def download_output(page) -> Image.Image:
    with page.expect_download() as info:
        page.click("#results a[download]")
    return Image.open(io.BytesIO(Path(info.value.path()).read_bytes()))


def test_crop_and_rotate_change_what_is_sent(session):
    page = session().open("/?model=negative")
    page.set_input_files("#file", files=[file_payload("quads.png", quadrants_png())])
    page.locator(".file-card").wait_for()
    page.focus(".file-card .edit-file")
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#editor")
    dialog.wait_for()
    assert page.evaluate("document.getElementById('editor').open")
    assert page.evaluate("document.activeElement.id") == "rotate-right"
    page.keyboard.press("Enter")  # a quarter turn clockwise: 80×60 becomes 60×80, blue (bottom left) now top left
    assert page.input_value("#crop-width") == "60" and page.input_value("#crop-height") == "80"
    page.fill("#crop-width", "30")
    page.fill("#crop-height", "40")
    assert page.inner_text("#edit-summary").startswith("Sends 30×40 pixels, turned 90° clockwise")
    shot(page, "crop-rotate-dialog")
    page.focus("#edit-apply")
    page.keyboard.press("Enter")
    card = page.locator(".file-card", has_text="quads-edited.png")
    card.wait_for()
    assert "30×40" in card.inner_text() and page.locator(".file-card").count() == 1
    page.wait_for_function("() => document.activeElement.classList.contains('edit-file')")  # focus back on the card
    run_and_wait(page)
    output = download_output(page).convert("RGBA")
    assert output.size == (30, 40)
    assert {output.getpixel((x, y)) for x in (0, 29) for y in (0, 39)} == {(255, 255, 0, 255)}  # the negative of blue
    shot(page, "crop-rotate-result")


def test_crop_by_dragging_and_escape_keeps_the_original(session):
    page = session().open("/?model=negative")
    page.set_input_files("#file", files=[file_payload("quads.png", quadrants_png())])
    page.locator(".file-card").wait_for()
    page.click(".file-card .edit-file")
    canvas = page.locator("#edit-canvas")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 1)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 4, steps=5)
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    left, top, width, height = (int(page.input_value(f"#crop-{name}")) for name in ("left", "top", "width", "height"))
    assert abs(left - 40) <= 1 and top == 0 and abs(width - 40) <= 1 and abs(height - 30) <= 1
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('editor').open")
    assert page.evaluate("document.activeElement.classList.contains('edit-file')")
    assert "quads.png" in page.inner_text(".file-card") and "80×60" in page.inner_text(".file-card")
    page.click(".file-card .edit-file")  # drag again, and apply: the green top right quadrant is sent
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 1)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.click("#edit-apply")
    page.locator(".file-card", has_text="quads-edited.png").wait_for()
    run_and_wait(page)
    output = download_output(page).convert("RGBA")
    assert abs(output.size[0] - 40) <= 1 and abs(output.size[1] - 30) <= 1
    assert output.getpixel((output.size[0] // 2, output.size[1] // 2)) == (255, 0, 255, 255)  # the negative of green


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_editor_at_phone_width(session, seven, scheme):
    page = session(viewport=PHONE, is_mobile=True, has_touch=True, scheme=scheme).open()
    jpeg = seven["color.jpg"][0]
    page.set_input_files("#file", files=[file_payload("seven.jpg", jpeg, "image/jpeg")])
    page.locator(".file-card").wait_for()
    page.click(".file-card .edit-file")
    page.locator("dialog#editor").wait_for()
    dialog = page.locator("dialog#editor").bounding_box()
    assert dialog["x"] >= 0 and dialog["x"] + dialog["width"] <= PHONE["width"]
    no_sideways_scroll(page)
    page.click("#rotate-left")
    shot(page, f"crop-rotate-phone-{scheme}")
    page.click("#edit-apply")
    card = page.locator(".file-card", has_text="seven-edited.jpg")
    card.wait_for()
    assert "JPEG" in card.inner_text()  # a JPEG stays a JPEG
    run_and_wait(page)
    assert page.inner_text("#results .top-label-name")  # still a digit prediction; a turned 7 may read differently
    no_sideways_scroll(page)


# -- contrast of everything added here, in both schemes ---------------------------------------------------------


def low_contrast(page) -> list[str]:
    from test_browser_dark_mode import AA_LARGE_TEXT, AA_TEXT, TEXT_COLORS_JS, contrast

    found = page.evaluate(TEXT_COLORS_JS)
    return [
        f"{item['label']}: {contrast(item['text'], item['background']):.2f}"
        for item in found
        if contrast(item["text"], item["background"]) < (AA_LARGE_TEXT if item["large"] else AA_TEXT)
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_new_controls_reach_wcag_aa(session, seven, scheme):
    page = session(scheme=scheme, permissions=["clipboard-read", "clipboard-write"]).open("/?model=negative")
    page.click("#camera-open")
    page.locator("#camera-capture:enabled").wait_for()
    page.set_input_files("#file", files=[file_payload("quads.png", quadrants_png())])
    page.locator(".file-card .edit-file").wait_for()
    run_and_wait(page)
    page.click("#results button.copy-image")
    page.locator("#results .copy-status", has_text="Copied").wait_for()
    assert not low_contrast(page)
    page.click(".file-card .edit-file")
    page.locator("dialog#editor").wait_for()
    assert not low_contrast(page)
    page.keyboard.press("Escape")
    page.select_option("#model", "digits")
    page.set_input_files("#file", files=[file_payload("seven.png", seven["gray.png"][0])])
    page.locator(".file-card", has_text="seven.png").wait_for()
    run_and_wait(page, 2)
    page.locator("#results .top-label").first.wait_for()
    page.route("**/api/v1/predict", lambda route: None)
    page.click("#run")
    page.locator("#cancel-run:visible").wait_for()
    assert not low_contrast(page), scheme
