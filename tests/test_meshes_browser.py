"""The 3D model panel of the upload page in a real browser (Playwright + Debian's chromium): the turntable, the
facts, a conversion download, the model run on the views, an error, at 375 px and in dark mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from browser_support import PHONE, close_checked, file_payload, launch_for_screenshots, live_app_server, open_page, shot
from PIL import Image

pytest.importorskip("trimesh")

import mesh_samples as samples  # noqa: E402

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "meshes")


def upload(page, name: str, data: bytes) -> None:
    page.set_input_files("#mesh-file", files=[file_payload(name, data, "application/octet-stream")])


def test_turntable_facts_download_and_prediction(browser, base, tmp_path):
    context, page = open_page(browser, base, accept_downloads=True, timeout_ms=TIMEOUT_MS)
    try:
        upload(page, "scene.glb", samples.encode(samples.scene(), "glb"))
        page.wait_for_selector("#mesh-result:not([hidden])")
        assert page.locator("#mesh-strip img").count() == 8
        facts = page.inner_text("#mesh-facts")
        assert "1,304" in facts and "658" in facts and "yes" in facts  # triangles, vertices, watertight
        first = page.get_attribute("#mesh-view", "src")
        assert first.startswith("data:image/png;base64,")
        page.locator("#mesh-strip button").nth(2).click()
        assert page.get_attribute("#mesh-view", "src") != first
        assert page.inner_text("#mesh-angle-name") == "turntable-2"
        shown = Image.open(io.BytesIO(page.locator("#mesh-view").screenshot()))
        assert np.asarray(shown.convert("RGB")).std() > 10  # something is drawn, not an empty box
        shot(page, "meshes-desktop")

        with page.expect_download() as info:
            page.click("#mesh-downloads button[data-format=stl]")
        download = info.value
        assert download.suggested_filename == "scene.stl"
        path = tmp_path / "scene.stl"
        download.save_as(path)
        assert samples.trimesh_load(path.read_bytes(), "stl").faces.shape == (1304, 3)

        page.click("#mesh-predict")
        page.wait_for_selector(".mesh-predictions ol li")
        assert "on 8 views" in page.inner_text("#mesh-predictions")
    finally:
        close_checked(context, page)


def test_a_hostile_model_shows_the_servers_reason(browser, base):
    context, page = open_page(browser, base, timeout_ms=TIMEOUT_MS)
    try:
        upload(page, "evil.gltf", samples.gltf_pointing_at("file:///etc/passwd"))
        page.wait_for_selector("#mesh-status.error")
        assert "not part of the upload" in page.inner_text("#mesh-status")
        assert page.locator("#mesh-result").is_hidden()
    finally:
        close_checked(context, page)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_panel_fits_a_phone(browser, base, scheme):
    context, page = open_page(browser, base, viewport=PHONE, color_scheme=scheme, timeout_ms=TIMEOUT_MS)
    try:
        upload(page, "cube.stl", samples.encode(samples.cube(), "stl"))
        page.wait_for_selector("#mesh-result:not([hidden])")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways: {width}px"
        box = page.locator("#mesh-view").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        shot(page, f"meshes-phone-{scheme}")
    finally:
        close_checked(context, page)
