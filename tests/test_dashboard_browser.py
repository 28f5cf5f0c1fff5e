"""The /dashboard page: server-rendered with the Flask test client (tables, errors, access), then drawn in Chromium
against a live server with seeded history (charts from the tables, no console errors), checked at 375 px and in the
dark scheme on the screenshots themselves, and without JavaScript (the tables alone).

Without /usr/bin/chromium the browser tests skip locally and fail under CI=true (tests/browser_support.py).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from browser_support import PHONE, close_checked, launch_for_screenshots, open_page, quiet_app, shot
from live_server import serve
from PIL import Image, ImageStat
from sqlalchemy import insert
from test_browser_dark_mode import AA_LARGE_TEXT, AA_TEXT, TEXT_COLORS_JS, contrast, luminance
from test_stats_api import UNTIL, jobs_rows, known_rows, random_rows

from ai_service import create_app
from ai_service.storage.schema import Job, Prediction

INLINE_CODE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=", re.IGNORECASE)
#: Figures that draw a chart once the page is seeded (every chart but the empty ones).
FIGURES = "figure.chart:has(canvas)"
#: The last 6 hours: the seeded rows fill it and the 6 hours before (the drift baseline).
PAGE = "/dashboard?range=6h"


def seed(app) -> int:
    """The stats tests' rows and jobs, moved so that their range ends now (the page's default: the last 24 h)."""
    shift = datetime.now(UTC) - UNTIL
    rows = [{**row, "created_at": row["created_at"] + shift} for row in random_rows() + known_rows()]
    jobs = [
        {
            **job,
            "created_at": job["created_at"] + shift,
            "finished_at": job["finished_at"] and job["finished_at"] + shift,
        }
        for job in jobs_rows()
    ]
    with app.extensions["ai_service"].history.engine.begin() as connection:
        connection.execute(insert(Prediction), rows)
        connection.execute(insert(Job), jobs)
    return len(rows)


# ---- server-rendered, test client ----------------------------------------------------------------------------


@pytest.fixture
def client(home):
    app = create_app({"TESTING": True, "home": str(home), "log_level": "WARNING"})
    seed(app)
    yield app.test_client()
    app.extensions["ai_service"].close()


def test_page_has_a_chart_and_its_table_per_aggregate(client):
    response = client.get("/dashboard")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert not INLINE_CODE.search(html), "inline script or style breaks the CSP"
    for section in ("traffic", "latency", "errors", "drift", "inputs", "jobs"):
        assert f'id="{section}"' in html, section
    figures = html.count('<figure class="chart"')
    assert figures >= 12 and html.count('<table class="models-table chart-data"') == figures
    assert html.count('<canvas role="img" aria-label=') == figures
    assert 'href="/dashboard" aria-current="page"' in html  # in the site navigation
    assert "vendor/chartjs/chart.umd.min.js" in html
    assert 'name="model" value="alpha"' in html  # models in the history, registered or not, can be chosen


def test_model_filter_and_the_api_agree(client):
    page = client.get("/dashboard", query_string={"model": "delta", "range": "24h"}).get_data(as_text=True)
    api = client.get("/api/v1/stats/traffic", query_string={"model": "delta"}).get_json()
    assert api["images"] == 100
    tiles = re.search(r'id="dashboard-totals">(.*?)</dl>', page, re.S).group(1)
    assert "<dt>Images</dt><dd>100</dd>" in tiles
    assert 'value="delta" checked' in page


def test_a_bad_range_keeps_the_form_and_says_why(client):
    response = client.get("/dashboard", query_string={"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"})
    assert response.status_code == 422
    assert 'id="dashboard-error"' in response.get_data(as_text=True)


def test_history_off_and_locked_pages(home):
    app = create_app({"TESTING": True, "home": str(home / "off"), "log_level": "WARNING", "history": "off"})
    response = app.test_client().get("/dashboard")
    assert response.status_code == 200 and 'id="dashboard-off"' in response.get_data(as_text=True)
    app.extensions["ai_service"].close()
    app = create_app({"TESTING": True, "home": str(home / "keys"), "log_level": "WARNING", "api_keys": "k1"})
    client = app.test_client()
    assert client.get("/dashboard").status_code == 401
    assert client.get("/dashboard", headers={"X-API-Key": "k1"}).status_code == 200
    app.extensions["ai_service"].close()


# ---- in Chromium -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[str]:
    app = quiet_app(tmp_path_factory.mktemp("dashboard") / "home")
    seed(app)
    try:
        with serve(app) as base:
            yield base
    finally:
        app.extensions["ai_service"].close()


def drawn_charts(page) -> list[dict]:
    """Each chart Chart.js drew: its table's numbers beside the chart's, and its canvas size and colors."""
    return page.eval_on_selector_all(
        FIGURES,
        """(figures) => figures.map((figure) => {
          const chart = window.Chart.getChart(figure.querySelector("canvas"));
          const table = figure.querySelector("table");
          const drawn = table.dataset.drawn === undefined ? Infinity : Number(table.dataset.drawn);
          const cells = [...table.querySelectorAll("tbody tr")].map((row) => [...row.querySelectorAll("td")]
            .slice(0, drawn).map((td) => td.dataset.value === undefined ? null : Number(td.dataset.value)));
          return {
            id: figure.id,
            drawn: Boolean(chart),
            open: figure.querySelector("details").open,
            labels: chart ? chart.data.labels.length : 0,
            rows: cells.length,
            table: cells[0] ? cells[0].map((_, column) => cells.map((row) => row[column])) : [],
            data: chart ? chart.data.datasets.map((set) => set.data) : [],
            width: figure.querySelector("canvas").getBoundingClientRect().width,
            tick: chart ? chart.options.scales.x.ticks.color : null,
            series: chart ? chart.data.datasets[0].borderColor : null,
          };
        })""",
    )


def test_every_chart_is_drawn_from_its_table_without_console_errors(browser, live_server):
    context, page = open_page(browser, live_server, PAGE)
    try:
        charts = drawn_charts(page)
        shot(page, "dashboard-desktop")
    finally:
        close_checked(context, page)
    assert len(charts) >= 12
    for chart in charts:
        assert chart["drawn"] and not chart["open"], chart["id"]
        assert chart["labels"] == chart["rows"] > 0, chart["id"]
        assert chart["data"] == chart["table"], chart["id"]
        assert chart["width"] > 300, chart["id"]


def screenshot(page, name: str) -> Image.Image:
    """The whole page as the test saw it (also saved for people), as an image to check."""
    shot(page, name)
    return Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")


def canvas_box(page, chart_id: str) -> tuple[int, int, int, int]:
    box = page.locator(f"#chart-{chart_id} canvas").bounding_box()
    scroll = page.evaluate("window.scrollY")
    return (int(box["x"]), int(box["y"] + scroll), int(box["x"] + box["width"]), int(box["y"] + scroll + box["height"]))


def colors_in(image: Image.Image) -> set[tuple[int, int, int]]:
    return {color for _, color in image.getcolors(maxcolors=1 << 20)}


def test_at_375_px_the_page_fits_and_the_charts_are_drawn(browser, live_server):
    context, page = open_page(browser, live_server, PAGE, viewport=PHONE)
    try:
        overflow = page.evaluate("document.documentElement.scrollWidth")
        charts = drawn_charts(page)
        image = screenshot(page, "dashboard-375")
        traffic = image.crop(canvas_box(page, "traffic"))
        series = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--chart-1').trim()")
    finally:
        close_checked(context, page)
    assert overflow <= PHONE["width"], f"the page scrolls sideways: {overflow} px"
    assert image.width == PHONE["width"]
    for chart in charts:
        assert chart["drawn"] and 250 < chart["width"] <= PHONE["width"], chart
    rgb = tuple(int(series[i : i + 2], 16) for i in (1, 3, 5))
    assert any(max(abs(a - b) for a, b in zip(color, rgb)) < 8 for color in colors_in(traffic)), (
        "the traffic chart's bars are missing from the screenshot"
    )


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_charts_follow_the_color_scheme_and_text_stays_readable(browser, live_server, scheme):
    context, page = open_page(browser, live_server, PAGE, color_scheme=scheme)
    try:
        charts = drawn_charts(page)
        muted, first = page.evaluate(
            """() => { const style = getComputedStyle(document.documentElement);
                       return ["--muted", "--chart-1"].map((name) => style.getPropertyValue(name).trim()); }"""
        )
        texts = page.evaluate(TEXT_COLORS_JS)
        image = screenshot(page, f"dashboard-{scheme}")
        latency = image.crop(canvas_box(page, "latency"))
    finally:
        close_checked(context, page)
    for chart in charts:
        assert chart["tick"] == muted and chart["series"] == first, chart
    low = [
        f"{item['label']}: {contrast(item['text'], item['background']):.2f}"
        for item in texts
        if contrast(item["text"], item["background"]) < (AA_LARGE_TEXT if item["large"] else AA_TEXT)
    ]
    assert not low, f"{scheme}: text below WCAG AA: {low}"
    page_light = luminance(ImageStat.Stat(image).mean)
    chart_light = luminance(ImageStat.Stat(latency).median)
    if scheme == "dark":
        assert page_light < 0.1 and chart_light < 0.1, (page_light, chart_light)
    else:
        assert page_light > 0.6 and chart_light > 0.6, (page_light, chart_light)
    assert len(colors_in(latency)) > 20, "the latency chart is blank"


def test_without_javascript_the_tables_are_the_page(browser, live_server):
    context, page = open_page(browser, live_server, PAGE, ready=False, java_script_enabled=False)
    try:
        state = page.eval_on_selector_all(
            FIGURES,
            """(figures) => figures.map((figure) => [figure.querySelector("details").open,
                 figure.querySelector(".chart-box").checkVisibility(), figure.querySelectorAll("tbody tr").length])""",
        )
        overflow = page.evaluate("document.documentElement.scrollWidth")
    finally:
        context.close()
    assert state and all(is_open and not visible and rows for is_open, visible, rows in state), state
    assert overflow <= 1280
