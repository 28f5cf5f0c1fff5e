"""The History pages and the upload page's history panel: server-rendered with the Flask test client, then the
whole round (upload, panel, entry page, filtered table) in a real browser against a live server.

Rows reach the database through the background writer, so every test flushes it before reading pages.
"""

from __future__ import annotations

import io
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from browser_support import (
    checked_page,
    file_payload,
    launch_for_screenshots,
    open_page,
    seven_variants,
    shot,
)
from conftest import encode
from live_server import serve
from PIL import Image
from test_browser_dark_mode import AA_LARGE_TEXT, AA_TEXT, TEXT_COLORS_JS, contrast
from web_doubles import register_doubles

import ai_service.web.history as history_pages
from ai_service import create_app

INLINE_CODE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=", re.IGNORECASE)
ROW_LINK = re.compile(r'<th scope="row"><a href="/history/([0-9a-f]{32})">')


def make_app(home, **settings):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING", "log_to_file": False, **settings})
    register_doubles(app)
    return app


@pytest.fixture
def app(home):
    """History on, keeping every image (so the entry page can show input and output)."""
    app = make_app(home, history_images="all")
    yield app
    app.extensions["ai_service"].close()


@pytest.fixture
def off_app(home):
    app = make_app(home, history="off")
    yield app
    app.extensions["ai_service"].close()


@pytest.fixture(scope="module")
def seven(digits_split) -> bytes:
    return seven_variants(digits_split)["gray.png"][0]


def cutout() -> bytes:
    """Red ink on a transparent canvas: the negative model's output and the ink box both depend on it."""
    pixels = np.zeros((30, 40, 4), np.uint8)
    pixels[5:20, 10:30] = (200, 20, 20, 255)
    return encode(Image.fromarray(pixels, "RGBA"))


def flush(app) -> None:
    assert app.extensions["ai_service"].history.writer.flush(5)


def api_predict(client, data: bytes, name: str, model: str = "digits") -> dict:
    response = client.post("/api/v1/predict", data={"model": model, "file": (io.BytesIO(data), name)})
    return response.get_json()


def form_predict(client, data: bytes, name: str, model: str = "digits"):
    return client.post("/predict", data={"model": model, "file": (io.BytesIO(data), name)})


def history_id(body: dict) -> str:
    results = body.get("results") or body.get("data", {}).get("results") or [body]
    return results[0]["history_id"]


def rows(html: str) -> list[str]:
    """The entry ids the table lists, top to bottom."""
    return ROW_LINK.findall(html)


def test_table_lists_predictions_newest_first_and_filters(app, client, seven):
    first = history_id(api_predict(client, seven, "first.png"))
    form_predict(client, seven, "second.png")
    api_predict(client, b"not an image at all", "broken.png")
    flush(app)
    page = client.get("/history")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    listed = rows(html)
    assert len(listed) == 3 and listed[-1] == first
    assert html.index("broken.png") < html.index("second.png") < html.index("first.png")
    assert "first.png" in html and 'digits<span class="muted">@' in html and '>7 <span class="muted">' in html
    assert '<option value="digits">digits</option>' in html and '<option value="negative">negative</option>' in html

    errors = client.get("/history?status=error").get_data(as_text=True)
    assert len(rows(errors)) == 1 and "broken.png" in errors and "state-failed" in errors
    assert '<option value="error" selected>' in errors
    web = client.get("/history?source=web").get_data(as_text=True)
    assert len(rows(web)) == 1 and "second.png" in web and ">web</td>" in web
    sha = client.get("/history?sha256=" + "A" * 64).get_data(as_text=True)  # typed in capitals: still a filter
    assert rows(sha) == [] and "No predictions match." in sha
    later = client.get("/history?since=2999-01-01T00:00").get_data(as_text=True)
    assert rows(later) == [] and 'value="2999-01-01T00:00"' in later


def test_browser_offset_makes_filter_times_local_and_exports_keep_filters(app, client, seven):
    api_predict(client, seven, "seven.png")
    flush(app)
    html = client.get("/history?model=digits&status=ok&since=2000-01-01T00:00&tz=120").get_data(as_text=True)
    exports = [unescape(href) for href in re.findall(r'href="(/api/v1/history/export\?[^"]+)"', html)]
    assert [parse_qs(urlsplit(href).query)["format"] for href in exports] == [["csv"], ["jsonl"], ["parquet"]]
    query = parse_qs(urlsplit(exports[0]).query)
    assert query["model"] == ["digits"] and query["status"] == ["ok"]
    assert query["since"] == ["2000-01-01T00:00:00+02:00"]
    assert len(rows(html)) == 1


def test_invalid_filter_keeps_the_form_with_a_message(client):
    page = client.get("/history?status=maybe&request_id=abc")
    html = page.get_data(as_text=True)
    assert page.status_code == 422
    assert 'id="history-error"' in html and "status" in html and 'id="history-filters"' in html
    assert 'value="abc"' in html


def test_older_link_pages_through_with_the_filters(app, client, seven, monkeypatch):
    monkeypatch.setattr(history_pages, "PAGE_SIZE", 2)
    for index in range(5):
        api_predict(client, seven, f"n{index}.png")
    flush(app)
    seen: list[str] = []
    url = "/history?model=digits"
    for _ in range(3):
        html = client.get(url).get_data(as_text=True)
        seen += rows(html)
        older = re.search(r'href="([^"]+)" id="older-page"', html)
        if older is None:
            break
        url = unescape(older.group(1))
        assert "model=digits" in url and "cursor=" in url
    assert len(seen) == 5 and len(set(seen)) == 5
    assert 'id="newest-page"' in html and 'id="older-page"' not in html


def test_entry_page_shows_result_images_timings_and_links(app, client, seven):
    body = api_predict(client, seven, "seven.png")
    entry_id = history_id(body)
    flush(app)
    page = client.get(f"/history/{entry_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "seven.png" in html and 'id="entry-predictions"' in html and html.count("<meter") == 3
    assert re.search(r'<li class="top"><span class="label">7</span>', html)
    assert re.search(r"<dt>forward</dt><dd>[\d.]+ ms</dd>", html)
    found = client.get(f"/api/v1/history/{entry_id}").get_json()
    found = found.get("data", found)
    assert f'href="/history?request_id={found["request_id"]}"' in html
    assert f'href="/history?sha256={found["input_sha256"]}"' in html and "other predictions of this image" in html
    assert f'src="/api/v1/history/{entry_id}/input"' in html  # history_images=all keeps the upload
    stored = client.get(f"/api/v1/history/{entry_id}/input")
    assert stored.status_code == 200 and stored.data == seven


def test_entry_page_shows_stored_output_and_detections(app, client):
    negative = history_id(api_predict(client, cutout(), "disc.png", model="negative"))
    boxes = history_id(api_predict(client, cutout(), "disc.png", model="inkbox"))
    flush(app)
    html = client.get(f"/history/{negative}").get_data(as_text=True)
    assert f'src="/api/v1/history/{negative}/output"' in html and f'src="/api/v1/history/{negative}/input"' in html
    output = client.get(f"/api/v1/history/{negative}/output")
    assert output.status_code == 200
    assert Image.open(io.BytesIO(output.data)).getpixel((20, 10)) == (55, 235, 235, 255)
    html = client.get(f"/history/{boxes}").get_data(as_text=True)
    assert 'id="entry-detections"' in html and "<rect" in html and "10, 5, 30, 20" in html


def test_entry_page_of_an_error_row(app, client):
    api_predict(client, b"\x89PNG\r\n\x1a\n broken", "broken.png")  # a lone failed image: an error body, no id
    flush(app)
    (entry_id,) = rows(client.get("/history?status=error").get_data(as_text=True))
    page = client.get(f"/history/{entry_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="entry-error"' in html and "broken.png" in html
    found = client.get(f"/api/v1/history/{entry_id}").get_json()
    found = found.get("data", found)
    assert found["error_code"] and f"({found['error_code']}, HTTP {found['http_status']})" in html
    assert unescape(found["error_message"]) in unescape(html)


def test_unknown_entry_is_a_404_page(app, client):
    page = client.get("/history/0123456789abcdef0123456789abcdef")
    assert page.status_code == 404 and "text/html" in page.content_type


def test_images_not_kept_are_said_so(home, seven):
    app = make_app(home)  # history_images=none (the default)
    try:
        client = app.test_client()
        entry_id = history_id(api_predict(client, cutout(), "disc.png", model="negative"))
        flush(app)
        html = client.get(f"/history/{entry_id}").get_data(as_text=True)
        assert "/output" not in html and '/input"' not in html and 'id="entry-not-kept"' in html
    finally:
        app.extensions["ai_service"].close()


def test_no_js_result_links_to_its_history_entry(app, client, seven):
    page = form_predict(client, seven, "seven.png")
    html = page.get_data(as_text=True)
    link = re.search(r'<p class="history-ref"><a href="/history/([0-9a-f]{32})">', html)
    assert page.status_code == 200 and link
    flush(app)
    entry = client.get(f"/history/{link.group(1)}").get_data(as_text=True)
    assert "seven.png" in entry and "<dd>web</dd>" in entry


def test_upload_page_tells_the_script_where_the_history_is(client):
    html = client.get("/").get_data(as_text=True)
    assert 'data-history="on"' in html and 'data-history-api="/api/v1/history"' in html
    assert 'href="/history" id="all-history"' in html
    assert re.search(r'<nav aria-label="Main">.*href="/history"', html, re.S)


@pytest.mark.parametrize("path", ["/history", "/history?status=error"])
def test_history_pages_have_no_inline_code_for_a_strict_csp(app, client, seven, path):
    entry_id = history_id(api_predict(client, seven, "seven.png"))
    flush(app)
    for url in (path, f"/history/{entry_id}"):
        page = client.get(url)
        assert page.status_code == 200
        assert not INLINE_CODE.findall(page.get_data(as_text=True)), url


def test_history_off_says_how_to_turn_it_on(off_app, seven):
    client = off_app.test_client()
    page = client.get("/history")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="history-off"' in html and "AI_SERVICE_HISTORY=on" in html
    assert client.get("/history/0123456789abcdef0123456789abcdef").status_code == 404
    upload = client.get("/").get_data(as_text=True)
    assert 'data-history="off"' in upload and "all-history" not in upload and "Clear history" in upload
    result = form_predict(client, seven, "seven.png").get_data(as_text=True)
    assert "history-ref" not in result and "/history/" not in result


def test_with_api_keys_the_history_needs_a_key(home, seven):
    app = make_app(home, api_keys=["reader-key"])
    try:
        client = app.test_client()
        api_predict_keyed = client.post(
            "/api/v1/predict",
            data={"model": "digits", "file": (io.BytesIO(seven), "seven.png")},
            headers={"X-API-Key": "reader-key"},
        ).get_json()
        entry_id = history_id(api_predict_keyed)
        flush(app)
        for url in ("/history", f"/history/{entry_id}"):
            page = client.get(url)
            assert page.status_code == 401 and 'id="history-locked"' in page.get_data(as_text=True), url
            assert "seven.png" not in page.get_data(as_text=True)
        assert 'data-history="off"' in client.get("/").get_data(as_text=True)
        keyed = client.get("/history", headers={"Authorization": "Bearer reader-key"})
        assert keyed.status_code == 200 and rows(keyed.get_data(as_text=True)) == [entry_id]
    finally:
        app.extensions["ai_service"].close()


# --- in a real browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("history") / "home")
    app.config["TESTING"] = False
    yield app
    app.extensions["ai_service"].close()


@pytest.fixture(scope="module")
def live_server(live_app):
    with serve(live_app) as base:
        yield base


@pytest.fixture
def page(browser, live_server):
    yield from checked_page(browser, live_server, None)


def test_upload_panel_links_to_the_entry_and_the_table_filters(page, live_server, live_app, seven):
    page.request.post(
        live_server + "/api/v1/predict",
        multipart={"model": "digits", "file": file_payload("broken.png", b"nope")},
    )
    page.goto(live_server + "/")
    page.wait_for_selector("html[data-ready]")
    assert page.get_attribute("#history-panel", "data-history") == "on"
    page.set_input_files("#file", files=[file_payload("seven.png", seven)])
    page.locator(".file-card").wait_for()
    page.click("#run")
    entry = page.locator("#history .history-entry").first
    link = entry.locator("a.history-link")
    link.wait_for()  # appears once the row is in the database and fetched back
    assert "seven.png" in entry.inner_text() and "7 (" in entry.inner_text()
    assert page.is_visible("#all-history")
    shot(page, "history-panel")

    page.reload()  # the tab keeps its ids: the panel is rebuilt from the server after a reload
    page.wait_for_selector("html[data-ready]")
    page.locator("#history .history-entry a.history-link").first.wait_for()
    page.click("#history .history-entry a.history-link")
    page.wait_for_url(re.compile(r"/history/[0-9a-f]{32}$"))
    assert page.inner_text("#entry-title").startswith("seven.png")
    assert page.inner_text("#entry-predictions .top .label") == "7"
    time = page.locator(".lede time")
    assert time.get_attribute("title").endswith("UTC") and "UTC" not in time.inner_text()

    page.click("text=← All history")
    page.wait_for_selector("#history-table")
    table = page.locator("#history-table tbody tr")
    assert table.count() >= 2 and page.locator("#history-table tr.status-error").count() >= 1
    page.select_option("#f-status", "error")
    page.click("#history-filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=error"))
    assert re.search(r"tz=-?\d+", page.url)
    assert table.count() == page.locator("#history-table tr.status-error").count() >= 1
    assert "broken.png" in page.inner_text("#history-table") and "seven.png" not in page.inner_text("#history-table")
    shot(page, "history-filtered")
    page.select_option("#f-status", "ok")
    page.click("#history-filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=ok"))
    assert table.count() == page.locator("#history-table tr.status-ok").count() >= 1
    assert "seven.png" in page.inner_text("#history-table") and "broken.png" not in page.inner_text("#history-table")


def test_with_history_off_the_panel_keeps_the_tab_history(browser, tmp_path, seven):
    """The per-tab history of before: summaries in sessionStorage, "Show" redraws a result, no links to /history."""
    app = make_app(tmp_path / "home", history="off")
    app.config["TESTING"] = False
    with serve(app) as base:
        context, page = open_page(browser, base)
        assert page.get_attribute("#history-panel", "data-history") == "off"
        page.set_input_files("#file", files=[file_payload("seven.png", seven)])
        page.locator(".file-card").wait_for()
        page.click("#run")
        entry = page.locator("#history .history-entry").first
        entry.locator("button", has_text="Show").wait_for()
        assert "seven.png" in entry.inner_text() and "7 (" in entry.inner_text()
        assert entry.locator("a").count() == 0 and page.locator("#all-history").count() == 0
        stored = page.evaluate("sessionStorage.getItem('ai_service.history.v1')")
        assert "seven.png" in stored and page.evaluate("sessionStorage.getItem('ai_service.history.server.v1')") is None
    context.close()
    app.extensions["ai_service"].close()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_history_pages_keep_wcag_aa_text_in_both_schemes(browser, live_server, live_app, scheme, seven):
    """The same sweep as test_browser_dark_mode, over the table and an entry page."""
    context, page = open_page(browser, live_server, None, color_scheme=scheme)
    try:
        answer = page.request.post(
            live_server + "/api/v1/predict",
            multipart={"model": "digits", "file": file_payload("seven.png", seven)},
        )
        entry_id = history_id(answer.json())
        flush(live_app)
        for path in ("/history", f"/history/{entry_id}"):
            page.goto(live_server + path)
            page.wait_for_selector("html[data-ready]")
            found = page.evaluate(TEXT_COLORS_JS)
            low = [
                f"{item['label']}: {contrast(item['text'], item['background']):.2f}"
                for item in found
                if contrast(item["text"], item["background"]) < (AA_LARGE_TEXT if item["large"] else AA_TEXT)
            ]
            assert len(found) > 20, found
            assert not low, f"{scheme} {path}: text below WCAG AA: {low}"
            shot(page, f"history-{path.count('/')}-{scheme}")
    finally:
        context.close()
