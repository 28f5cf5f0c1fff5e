"""The upload page with the real digits-detect and digits-segment models (Chromium): clicking an example scene and
Run draws a box per digit with its label over the picture, and the mask over the picture with its color legend."""

from __future__ import annotations

import pytest
from browser_support import close_checked, launch_for_screenshots, live_app_server, open_page, shot

from ai_service.models.builtin.make_examples import MODEL_EXAMPLES


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "digit-scenes")


def run_example(page, model: str, example: str) -> tuple[dict, object]:
    """Choose the model, click its example, Run: the JSON result and the result card the page drew for it."""
    page.select_option("#model", model)
    page.wait_for_function(
        "names => JSON.stringify([...document.querySelectorAll('#examples .example')].map((n) => n.dataset.name))"
        " === JSON.stringify(names)",
        arg=list(MODEL_EXAMPLES[model]),
    )
    page.locator(f"#examples button.example[data-name='{example}']").click()
    page.locator("#file-list .file-card .file-name", has_text=example).wait_for()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/predict") and r.request.method == "POST") as answer:
        page.click("#run")
    card = page.locator(f"#results .result-item[aria-label='Result for {example}']").first
    card.wait_for()
    return answer.value.json()["results"][0], card


def test_the_page_draws_the_boxes_and_the_mask_legend_of_the_example_scenes(browser, live_server):
    context, page = open_page(browser, live_server)
    try:
        result, card = run_example(page, "digits-detect", "digit-scene.jpg")
        detections = result["detections"]
        assert len(detections) >= 4
        rects = card.locator("svg.boxes rect")
        assert rects.count() == len(detections)
        drawn = rects.evaluate_all(
            "nodes => nodes.map((n) => ['x', 'y', 'width', 'height'].map((k) => +n.getAttribute(k)))"
        )
        for (x, y, w, h), d in zip(drawn, detections):
            assert [round(x, 2), round(y, 2), round(x + w, 2), round(y + h, 2)] == d["box"]
        labels = card.locator(".box-label").all_inner_texts()
        assert [text.split()[0] for text in labels] == [d["label"] for d in detections]
        frame = card.locator(".overlay-frame").bounding_box()
        boxes = card.locator("svg.boxes").bounding_box()
        assert (
            frame and boxes and abs(frame["width"] - boxes["width"]) < 1 and abs(frame["height"] - boxes["height"]) < 1
        )
        shot(page, "digits-detect-example")

        result, card = run_example(page, "digits-segment", "digit-sticker.png")
        mask = card.locator("img.mask-overlay")
        mask.wait_for()
        page.wait_for_function("node => node.complete && node.naturalWidth > 0", arg=mask.element_handle())
        assert mask.evaluate("node => [node.naturalWidth, node.naturalHeight]") == [result["width"], result["height"]]
        assert "checker" in card.locator(".overlay-frame img.result-image").get_attribute("class")  # alpha shows
        legend = card.locator(".mask-legend li")
        assert legend.count() == len(result["classes"]) >= 3
        assert [text.split()[0] for text in legend.all_inner_texts()] == [c["label"] for c in result["classes"]]
        fills = card.locator(".mask-legend rect").evaluate_all("nodes => nodes.map((n) => n.getAttribute('fill'))")
        assert fills == [c["color"] for c in result["classes"] if c["label"] != "background"]
        shot(page, "digits-segment-example")
    finally:
        close_checked(context, page)
