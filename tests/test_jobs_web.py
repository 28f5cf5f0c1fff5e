"""The Jobs page: server-rendered with the Flask test client (form, models, recent jobs, no-JS notice, jobs off, API
keys), then in a real browser against a live server: a folder of digit PNGs and a zip archive submitted, followed to
the end, the result downloads and the link to the job's rows in History."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest
from browser_support import checked_page, file_payload, launch_for_screenshots, open_page, shot
from conftest import encode
from jobs_support import make_app
from live_server import serve
from test_browser_dark_mode import AA_LARGE_TEXT, AA_TEXT, TEXT_COLORS_JS, contrast

INLINE_CODE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=", re.IGNORECASE)
TIMEOUT_MS = 60_000
KEY = "page-key"


@pytest.fixture
def app(home):
    app = make_app(home)
    yield app
    app.extensions["ai_service"].close()


@pytest.fixture(scope="module")
def digit_files(digits_split) -> list[tuple[str, bytes, int]]:
    """Eight held-out digits as (relative path in a folder, PNG bytes, label)."""
    from ai_service.models.builtin.digits_training import render_digit

    found = []
    for index in range(8):
        label = int(digits_split.test_labels[index])
        found.append((f"{label}/{index}.png", encode(render_digit(digits_split.test_images[index], 32)), label))
    return found


def wait(client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/jobs/{job_id}").get_json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_page_has_the_form_the_models_the_limits_and_a_no_js_notice(client):
    page = client.get("/jobs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for text in (
        'id="job-form"',
        "webkitdirectory",
        'id="job-files"',
        'value="digits" data-task="classification"',
        'value="negative" data-task="image-to-image"',
        'name="top_k"',
        'name="output_format"',
        f'data-max-bytes="{2048 * 1024 * 1024}"',
        'data-max-items="100000"',
        'id="jobs-no-js"',
        'data-api="/api/v1/jobs"',
        "No jobs yet.",
        "/static/jobs.js",
    ):
        assert text in html, text
    assert re.search(r'<nav aria-label="Main">.*<a href="/jobs" aria-current="page">Jobs</a>', html, re.S)
    assert not INLINE_CODE.findall(html)
    assert client.get("/static/jobs.js").status_code == 200


def test_recent_jobs_are_listed_with_downloads_and_the_history_link(app, client, digit_files):
    files = [(io.BytesIO(data), path) for path, data, _ in digit_files[:3]]
    job_id = client.post("/api/v1/jobs", data={"file": files, "name": "three digits"}).get_json()["id"]
    wait(client, job_id)
    html = client.get("/jobs").get_data(as_text=True)
    assert f'data-job="{job_id}"' in html and "three digits" in html and "succeeded" in html
    for fmt in ("jsonl", "csv", "parquet"):
        assert f'href="/api/v1/jobs/{job_id}/results?format={fmt}"' in html
    assert f'href="/api/v1/jobs/{job_id}/outputs.zip"' in html
    assert f'href="/history?job_id={job_id}"' in html and f'href="/jobs?job={job_id}"' in html
    assert not INLINE_CODE.findall(html)


def test_jobs_off_says_how_to_turn_them_on(home):
    app = make_app(home, jobs="off")
    try:
        page = app.test_client().get("/jobs")
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and 'id="jobs-off"' in html and "AI_SERVICE_JOBS=on" in html
        assert 'id="job-form"' not in html
    finally:
        app.extensions["ai_service"].close()


def test_with_api_keys_the_page_needs_a_key(home):
    app = make_app(home, api_keys=[KEY])
    try:
        client = app.test_client()
        page = client.get("/jobs")
        assert page.status_code == 401 and 'id="jobs-locked"' in page.get_data(as_text=True)
        assert 'id="jobs-table"' not in page.get_data(as_text=True)
        keyed = client.get("/jobs", headers={"X-API-Key": KEY})
        assert keyed.status_code == 200 and 'id="job-form"' in keyed.get_data(as_text=True)
    finally:
        app.extensions["ai_service"].close()


# --- in a real browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("jobs") / "home")
    app.config["TESTING"] = False
    with serve(app) as base:
        yield base
    app.extensions["ai_service"].close()


@pytest.fixture
def page(browser, live):
    yield from checked_page(browser, live, None, timeout_ms=TIMEOUT_MS, accept_downloads=True)


def finished(page, live) -> str:
    """Wait for the watched job to finish; its id."""
    page.wait_for_selector('#job-current[data-finished="succeeded"]')
    return page.inner_text("#job-id")


def test_a_zip_archive_and_the_page_reopened_on_its_job(page, live, digit_files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data, _ in digit_files[:4]:
            archive.writestr(f"batch/{path}", data)
    page.goto(live + "/jobs")
    page.wait_for_selector("html[data-ready]")
    page.set_input_files("#job-files", files=[file_payload("batch.zip", buffer.getvalue(), "application/zip")])
    assert "Archive batch.zip" in page.inner_text("#job-selection")
    page.click("#job-submit")
    job_id = finished(page, live)
    assert page.inner_text("#job-counts") == "4 of 4 images" and page.inner_text("#job-name-shown") == "batch.zip"
    csv = page.request.get(live + page.locator('#job-downloads a[data-format="csv"]').get_attribute("href"))
    assert csv.ok and len(re.findall(r"^batch/", csv.text(), re.M)) == 4

    page.goto(live + f"/jobs?job={job_id}")  # a reload keeps following the job the URL names
    page.wait_for_selector('#job-current[data-finished="succeeded"]')
    assert page.inner_text("#job-id") == job_id and page.is_visible("#job-history")


def test_a_folder_runs_to_the_end_with_downloads_and_history(page, live, tmp_path, digit_files):
    folder = tmp_path / "scans"
    for path, data, _ in digit_files:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    (folder / ".DS_Store").write_bytes(b"junk the page leaves out")
    page.goto(live + "/jobs")
    page.wait_for_selector("html[data-ready]")
    assert page.is_hidden("#jobs-no-js")
    page.select_option("#model", "digits")
    page.set_input_files("#job-folder", str(folder))
    assert re.search(r"8 file\(s\) from scans", page.inner_text("#job-selection"))
    page.click("#job-submit")
    job_id = finished(page, live)
    assert re.fullmatch(r"[0-9a-f]{32}", job_id) and f"job={job_id}" in page.url
    assert page.inner_text("#job-counts") == "8 of 8 images" and page.inner_text("#job-state") == "succeeded"
    assert page.inner_text("#job-done") == "8" and page.inner_text("#job-failed") == "0"
    assert page.inner_text("#job-name-shown") == "scans" and page.is_hidden("#job-cancel")
    assert "images/s" in page.inner_text("#job-rate")
    shot(page, "jobs-finished")

    link = page.locator('#job-downloads a[data-format="jsonl"]')
    assert link.get_attribute("href") == f"/api/v1/jobs/{job_id}/results?format=jsonl"
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"job-{job_id}.jsonl"
    rows = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    expected = sorted((f"scans/{path}", str(label)) for path, _, label in digit_files)  # the page sends them by path
    assert [row["path"] for row in rows] == [path for path, _ in expected]
    assert sum(row["top1_label"] == label for row, (_, label) in zip(rows, expected, strict=True)) >= 7

    assert page.locator(f'#jobs-table tr[data-job="{job_id}"]').count() == 1
    history = page.locator("#job-history")
    assert history.is_visible() and history.get_attribute("href") == f"/history?job_id={job_id}"
    history.click()
    page.wait_for_url(re.compile(rf"/history\?job_id={job_id}$"))
    page.wait_for_selector("#history-table")
    assert page.locator("#history-table tbody tr").count() == 8  # this job's rows only, not the zip job's before


def test_a_refused_archive_says_why(page, live):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.png", b"\x89PNG\r\n\x1a\n")
    page.goto(live + "/jobs")
    page.wait_for_selector("html[data-ready]")
    page.set_input_files("#job-files", files=[file_payload("bad.zip", buffer.getvalue(), "application/zip")])
    page.click("#job-submit")
    page.wait_for_selector("#job-error:not([hidden])")
    assert "escape.png" in page.inner_text("#job-error") and page.is_hidden("#job-current")


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_page_keeps_wcag_aa_text_in_both_schemes(browser, live, scheme, digit_files):
    """The same sweep as test_browser_dark_mode, over the form, a followed job and the recent jobs."""
    context, page = open_page(browser, live, None, timeout_ms=TIMEOUT_MS, color_scheme=scheme)
    try:
        files = [file_payload(path.replace("/", "-"), data) for path, data, _ in digit_files[:2]]
        page.goto(live + "/jobs")
        page.wait_for_selector("html[data-ready]")
        page.set_input_files("#job-files", files=files)
        page.click("#job-submit")
        page.wait_for_selector('#job-current[data-finished="succeeded"]')
        found = page.evaluate(TEXT_COLORS_JS)
        low = [
            f"{item['label']}: {contrast(item['text'], item['background']):.2f}"
            for item in found
            if contrast(item["text"], item["background"]) < (AA_LARGE_TEXT if item["large"] else AA_TEXT)
        ]
        assert len(found) > 20, found
        assert not low, f"{scheme}: text below WCAG AA: {low}"
        shot(page, f"jobs-{scheme}")
    finally:
        context.close()


def test_cancel_from_the_page(browser, tmp_path, digit_files):
    """Nobody runs this server's chunks (no local workers), so the job waits queued until the page cancels it."""
    app = make_app(tmp_path / "home", jobs_local_workers=0)
    app.config["TESTING"] = False
    context, page = open_page(browser, "", None, timeout_ms=TIMEOUT_MS)
    try:
        with serve(app) as base:
            page.goto(base + "/jobs")
            page.wait_for_selector("html[data-ready]")
            files = [file_payload(f"{index}.png", data) for index, (_, data, _) in enumerate(digit_files[:3])]
            page.set_input_files("#job-files", files=files)
            page.click("#job-submit")
            page.wait_for_selector("#job-state:text('queued')")
            assert page.inner_text("#job-counts") == "0 of 3 images" and page.is_visible("#job-cancel")
            page.click("#job-cancel")
            page.wait_for_selector('#job-current[data-finished="cancelled"]')
            assert page.is_hidden("#job-cancel") and page.is_visible("#job-history")
            page.locator("#jobs-table tr.job-cancelled").wait_for()
    finally:
        context.close()
        app.extensions["ai_service"].close()
