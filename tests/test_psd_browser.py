"""The upload page's PSD layer picker (static/psd.js), in Debian's chromium: a PSD upload lists its layers, and the
chosen one travels with the predict request as `layer` (or `layers=visible`); usable at 375 px and in dark mode."""

from __future__ import annotations

import pytest
from browser_support import PHONE, close_checked, file_payload, launch_for_screenshots, live_app_server, open_page, shot
from test_psd_layers import layered_psd

PSD_TYPE = "image/vnd.adobe.photoshop"


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "psd-picker", doubles=True)


@pytest.mark.parametrize("viewport,scheme", [(None, "light"), (PHONE, "dark")])
def test_layer_picker_sends_the_chosen_layer(browser, live_server, viewport, scheme):
    options = {"color_scheme": scheme, **({"viewport": viewport} if viewport else {})}
    context, page = open_page(browser, live_server, "/?model=inkbox", **options)
    try:
        picker = page.locator("#psd-layers")
        assert picker.is_hidden()
        page.set_input_files("#file", files=[file_payload("design.psd", layered_psd(), PSD_TYPE)])
        page.locator("#psd-layer option[value='3/0']").wait_for(state="attached")
        assert picker.is_visible()
        labels = page.locator("#psd-layer option").all_inner_texts()
        assert labels[:3] == ["Flattened image (as saved)", "Visible layers", "Background"]
        assert any("Magenta" in label and "hidden" in label for label in labels)
        assert "8 layers, 60×40" in page.locator("#psd-layer-hint").inner_text()
        box = page.locator("#psd-layer").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
        page.select_option("#psd-layer", "3/0")
        with page.expect_response("**/api/v1/predict") as sent:
            page.click("#run")
        boxes = [result["detections"][0]["box"] for result in sent.value.json()["results"]]
        assert boxes == [[50, 30, 56, 35]]  # the Magenta layer alone (hidden in the document)
        page.select_option("#psd-layer", "visible")
        with page.expect_response("**/api/v1/predict") as again:
            page.click("#run")
        assert again.value.json()["results"][0]["detections"][0]["box"] == [0, 0, 60, 40]  # opaque background
        page.locator("#results").get_by_text("ink", exact=False).first.wait_for()
        shot(page, f"psd-layer-picker-{scheme}")
    finally:
        close_checked(context, page)
