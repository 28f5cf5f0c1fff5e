"""Issue 17, layout and plain-HTML defects (Playwright driving Debian's chromium against a live server).

- 3: no page scrolls sideways at 320 and 375 px (with and without JavaScript, every model's options shown);
- 12: /status shows every column of its table at 1280 px and the torch threads a forward really gets;
- 13: the out-of-distribution warning of a classifier is shown on the page (script and result page);
- 14: without JavaScript every model's description is on the form; no "paste with Ctrl+V" on touch screens;
  /docs try-it inputs are as tall as its selects.

Screenshots land in test-artifacts/screenshots/ (layout-*.png). Every page is checked for console errors, so a
Content-Security-Policy violation (inline script or style) fails the test that caused it.
"""

from __future__ import annotations

import numpy as np
import pytest
from browser_support import (
    SCREENSHOTS,
    assert_no_console_errors,
    file_payload,
    launch_for_screenshots,
    live_app_server,
    open_page,
    quiet_app,
    seven_variants,
    shot,
)
from conftest import encode
from live_server import serve
from PIL import Image

from ai_service.server import cores

PHONE_WIDTHS = (320, 375)
#: Every page the app serves to people, and two error pages (404 for a page and for a history entry).
PAGES = ("/", "/tools", "/status", "/docs", "/history", "/jobs", "/no-such-page", "/history/0123456789abcdef")


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "layout", doubles=True)


def _open(browser, base: str, path: str | None, width: int = 1280, height: int = 900, ready: bool = False, **options):
    """open_page() at width × height; waits for the script only when `ready` (some pages have none)."""
    return open_page(browser, base, path, ready=ready, viewport={"width": width, "height": height}, **options)


def _overflow(page, width: int) -> list[str]:
    """Empty when the page fits `width`; else the document's width and the elements that stick out."""
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width <= width:
        return []
    culprits = page.evaluate(
        """(width) => [...document.querySelectorAll('body *')]
             .filter((e) => e.getBoundingClientRect().right > width + 0.5)
             .slice(0, 5)
             .map((e) => `${e.tagName}.${e.className} → ${Math.round(e.getBoundingClientRect().right)}`)""",
        width,
    )
    return [f"scrollWidth {scroll_width} > {width}", *culprits]


def _history_entry(page, base: str) -> str:
    """Run the negative test double once through the API; its history entry's page path."""
    upload = encode(Image.new("RGB", (40, 30), (200, 30, 30)))
    response = page.request.post(
        base + "/api/v1/predict",
        multipart={"model": "negative", "file": file_payload("red.png", upload)},
    )
    assert response.ok, response.text()
    return "/history/" + response.json()["results"][0]["history_id"]


def cat_photo() -> bytes:
    """A real photo nothing like a digit: scikit-image's cat (Chelsea), else a smooth synthetic scene."""
    try:
        from skimage import data

        pixels = data.chelsea()
    except ImportError:  # pragma: no cover - scikit-image is a dev dependency
        yy, xx = np.mgrid[0:300, 0:450]
        pixels = np.dstack([(xx % 97) * 2, (yy % 61) * 4, (xx + yy) % 255]).astype(np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


# Defect 3: no page scrolls sideways on a phone.


@pytest.mark.parametrize("script", [True, False], ids=["js", "no-js"])
@pytest.mark.parametrize("width", PHONE_WIDTHS)
def test_no_page_scrolls_sideways_on_a_phone(browser, live_server, width, script):
    context, page = _open(browser, live_server, None, width, 800, java_script_enabled=script)
    problems = {}
    for path in (*PAGES, _history_entry(page, live_server)):
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
        if overflow := _overflow(page, width):
            problems[path] = overflow
        if path in ("/", "/tools", "/docs") and width == 320:
            shot(page, f"layout-{path.strip('/') or 'index'}-{width}-{'js' if script else 'no-js'}")
    # The form shows each model's options (the image models' long "PNG (lossless, keeps transparency)").
    for path in ("/", "/tools"):
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
        if script and path == "/":
            page.wait_for_selector("html[data-ready]")
        for model in page.eval_on_selector_all("#model option:not([disabled])", "options => options.map(o => o.value)"):
            if script:
                page.select_option("#model", model)
            else:
                page.goto(f"{live_server}{path}?model={model}")
            if overflow := _overflow(page, width):
                problems[f"{path} with {model}"] = overflow
    # The plain form's result page (no script) and its error page.
    if not script:
        page.goto(live_server + "/?model=negative")
        page.set_input_files(
            "#file",
            files=[
                {
                    "name": "a-rather-long-file-name-without-any-spaces-at-all.png",
                    "mimeType": "image/png",
                    "buffer": encode(Image.new("RGBA", (90, 60))),
                }
            ],
        )
        page.click("#run")
        page.wait_for_selector("#result-title")
        if overflow := _overflow(page, width):
            problems["POST /predict (result)"] = overflow
        shot(page, f"layout-result-{width}-no-js")
    assert_no_console_errors(page)
    context.close()
    assert not problems, problems


# Defect 12: the status page.


def test_status_table_shows_every_column_at_desktop_width(browser, live_server):
    context, page = _open(browser, live_server, "/status", 1280, 800)
    region = page.locator(".table-scroll")
    widths = region.evaluate("(box) => [box.scrollWidth, box.clientWidth]")
    last = page.locator(".models-table thead th").last
    assert last.inner_text().strip().lower() == "last used"
    box, frame = last.bounding_box(), region.bounding_box()
    shot(page, "layout-status-1280")
    assert_no_console_errors(page)
    context.close()
    assert widths[0] <= widths[1], f"the models table scrolls inside its box at 1280 px: {widths}"
    assert box["x"] + box["width"] <= frame["x"] + frame["width"] + 0.5


def _device_line(browser, base: str) -> str:
    context, page = _open(browser, base, "/status")
    text = page.locator(".stat").first.inner_text()
    assert_no_console_errors(page)
    context.close()
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("fixed", "expected"),
    [
        (1, "1 torch thread per forward"),  # singular
        (3, "3 torch threads per forward"),  # AI_SERVICE_TORCH_THREADS wins over the core budget
        (0, None),  # adaptive: up to every core of this worker's budget
    ],
)
def test_status_reports_the_torch_threads_a_forward_gets(browser, tmp_path, fixed, expected):
    total = cores.budget().total
    if expected is None:
        expected = f"up to {total} torch thread{'s' if total != 1 else ''} per forward"
    with serve(quiet_app(tmp_path / "home", doubles=True, torch_threads=fixed)) as base:
        line = _device_line(browser, base)
    assert expected in line, line
    assert "1 torch threads" not in line


# Defect 13: a classifier says when an input is unlike its training data.


def test_classifier_warning_is_shown_for_a_photo_that_is_no_digit(browser, live_server, digits_split):
    context, page = _open(browser, live_server, "/?model=digits", ready=True)
    seven = seven_variants(digits_split)["gray.png"][0]
    page.set_input_files("#file", files=[file_payload("seven.png", seven)])
    page.click("#run")
    page.locator("#results[data-run='1'] .result-item").first.wait_for()
    assert page.locator("#results .result-warning").count() == 0  # a real digit: no warning
    page.click("#clear-files")
    page.set_input_files("#file", files=[file_payload("cat.jpg", cat_photo(), "image/jpeg")])
    page.click("#run")
    warning = page.locator("#results[data-run='2'] .result-warning")
    warning.first.wait_for()
    text = warning.first.inner_text()
    assert "unlike" in text and "digits" in text, text
    shot(page, "layout-warning-cat-js")
    assert_no_console_errors(page)
    context.close()

    context, page = _open(browser, live_server, "/?model=digits", java_script_enabled=False)
    page.set_input_files("#file", files=[file_payload("cat.jpg", cat_photo(), "image/jpeg")])
    page.click("#run")
    page.wait_for_selector("#result-title")
    text = page.locator(".result-warning").first.inner_text()
    assert "unlike" in text and "digits" in text, text
    shot(page, "layout-warning-cat-no-js")
    context.close()


# Defect 14: plain HTML follows the picked model; touch screens; /docs try-it heights.


def test_form_without_javascript_describes_the_picked_model(browser, live_server):
    context, page = _open(browser, live_server, "/", java_script_enabled=False)
    models = page.request.get(live_server + "/api/v1/models").json()["models"]
    described = [m for m in models if m.get("description") and m["state"] != "failed"]
    assert len(described) > 2
    info = page.locator("#model-info")
    for model in described:
        page.select_option("#model", model["name"])
        shown = info.get_by_text(model["description"], exact=False).all()
        assert any(element.is_visible() for element in shown), model["name"]
    shot(page, "layout-model-info-no-js")
    # A reload with ?model= (the result page's "Run another image" link) marks the picked model.
    page.goto(live_server + "/?model=edges")
    assert "edges" in info.locator(".chosen").inner_text()
    context.close()


def test_result_page_without_javascript_names_the_model_and_its_description(browser, live_server):
    context, page = _open(browser, live_server, "/?model=negative", java_script_enabled=False)
    page.set_input_files("#file", files=[file_payload("a.png", encode(Image.new("RGB", (8, 8))))])
    page.click("#run")
    page.wait_for_selector("#result-title")
    assert "inverts colors" in page.locator(".model-description").inner_text()
    context.close()


def test_drop_zone_offers_no_keyboard_paste_on_a_touch_screen(browser, live_server):
    phone, page = _open(browser, live_server, "/", 375, 812, is_mobile=True, has_touch=True, ready=True)
    text = page.locator("#dropzone").inner_text()
    # The drop zone alone: a full-page capture resizes the emulated screen and loses (pointer: coarse) meanwhile.
    page.locator("#dropzone").screenshot(path=str(SCREENSHOTS / "layout-dropzone-touch.png"))
    phone.close()
    assert "Ctrl" not in text and "paste" not in text.lower(), text
    assert "browse" in text or "choose" in text.lower(), text

    desktop, page = _open(browser, live_server, "/", ready=True)
    assert "Ctrl" in page.locator("#dropzone").inner_text()  # a mouse and keyboard keep the hint
    desktop.close()


@pytest.mark.parametrize("width", [1280, 375])
def test_docs_try_it_inputs_are_as_tall_as_the_selects(browser, live_server, width):
    context, page = _open(browser, live_server, "/docs", width, 900)
    heights = page.evaluate(
        """() => [...document.querySelectorAll(
               '.try input:not([type=file]):not([type=checkbox]), .try select, #api-key')]
             .filter((e) => e.getClientRects().length)
             .map((e) => [e.tagName.toLowerCase() + '#' + e.id, e.getBoundingClientRect().height])"""
    )
    assert_no_console_errors(page)
    context.close()
    selects = {round(h) for name, h in heights if name.startswith("select")}
    inputs = {name: round(h) for name, h in heights if name.startswith("input")}
    assert len(selects) == 1 and inputs, heights
    (select_height,) = selects
    wrong = {name: h for name, h in inputs.items() if abs(h - select_height) > 1}
    assert not wrong, f"selects are {select_height} px tall; these inputs are not: {wrong}"


def test_layout_screenshots_dark_mode(browser, live_server):
    """Not an assertion of looks: the phone pages in dark mode, for a person to look at."""
    context, page = _open(browser, live_server, None, 375, 812, color_scheme="dark")
    for path in ("/", "/status", "/docs"):
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
        assert not _overflow(page, 375)
        shot(page, f"layout-dark-{path.strip('/') or 'index'}-375")
    context.close()
    context, page = _open(browser, live_server, "/status", 1280, 800, color_scheme="dark")
    shot(page, "layout-dark-status-1280")
    context.close()
