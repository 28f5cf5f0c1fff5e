"""Issue 17 in a real browser: example inputs to click for the chosen model, and "Use via API" snippets (curl, Python
with ai_service.client and requests, JavaScript fetch) that reproduce exactly the request the page sent.

The curl and Python snippets are copied out of the page and run (bash, this Python) against the same live server,
with the example files saved under their names, and must get the answer the page got. Every page is checked for
console errors (a CSP violation included). Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from browser_support import close_checked, launch_for_screenshots, live_app_server, open_page, shot

from ai_service.models.builtin.make_examples import MODEL_EXAMPLES

DESKTOP = {"width": 1280, "height": 800}
#: What differs between two runs of the same request: ids and timings.
#: What changes from one request to the next: ids, timings, and whether the result cache answered (a repeat is cached).
VOLATILE = {"history_id", "timing_ms", "request_id", "cached"}


@pytest.fixture(scope="module")
def browser():
    yield from launch_for_screenshots()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    yield from live_app_server(tmp_path_factory, "ui-examples")


@pytest.fixture
def session(browser, live_server):
    """Opens pages on the live server (scripted ones once ready); each is closed after the test, failing it on
    console errors (404s of polled resources aside)."""
    opened: list = []

    def new_page(path: str = "/", *, script: bool = True, scheme: str = "light", **options):
        options.setdefault("viewport", DESKTOP)
        opened.append(
            open_page(
                browser, live_server, path, ready=script, java_script_enabled=script, color_scheme=scheme, **options
            )
        )
        return opened[-1][1]

    yield new_page
    for context, page in opened:
        close_checked(context, page)


def example_names(page) -> list[str]:
    return page.eval_on_selector_all("#examples .example", "nodes => nodes.map((n) => n.dataset.name)")


def choose_model(page, ref: str) -> None:
    page.select_option("#model", ref)
    page.wait_for_function(
        "names => JSON.stringify([...document.querySelectorAll('#examples .example')].map((n) => n.dataset.name))"
        " === JSON.stringify(names)",
        arg=list(MODEL_EXAMPLES[ref]),
    )


def pick_example(page, name: str) -> None:
    page.locator(f"#examples button.example[data-name='{name}']").click()
    page.locator("#file-list .file-card .file-name", has_text=name).wait_for()


def run_page(page) -> dict:
    """Press Run; the JSON the page received for its (single) request."""
    with page.expect_response(lambda r: r.url.endswith("/api/v1/predict") and r.request.method == "POST") as answer:
        page.click("#run")
    page.locator("#results .result-item").first.wait_for()
    return answer.value.json()


def snippet(page, kind: str) -> str:
    return page.locator(f"#api-panel code[data-snippet='{kind}']").inner_text()


def stable(body: dict) -> dict:
    """A predict answer without what changes from one request to the next."""
    results = [{key: value for key, value in result.items() if key not in VOLATILE} for result in body["results"]]
    return {"model": body["model"], "task": body["task"], "results": results}


def without_nulls(value):
    """JSON with null members dropped: the typed client's dump leaves out what is unset (exclude_none)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def same_answer(body: dict, expected: dict) -> bool:
    """`body` says what `expected` says, ids, timings and null members aside."""
    return without_nulls(stable(body)) == without_nulls(expected)


# ---- examples to click --------------------------------------------------------------------------------------------


def test_an_example_is_a_keyboard_button_that_becomes_the_input_and_runs(session):
    page = session()
    assert example_names(page) == list(MODEL_EXAMPLES["digits"])
    first = page.locator("#examples .example").first
    assert first.evaluate("node => node.tagName") == "BUTTON"
    assert first.get_attribute("aria-label") == "Use the example handwritten 7 (handwritten-7.png)"
    page.focus("#file")
    for _ in range(10):  # keyboard only: Tab from the file input reaches the first example
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.name") == "handwritten-7.png":
            break
    assert page.evaluate("document.activeElement.dataset.name") == "handwritten-7.png"
    page.keyboard.press("Enter")
    page.locator("#file-list .file-card .file-name", has_text="handwritten-7.png").wait_for()
    assert page.evaluate("document.getElementById('file').files[0].name") == "handwritten-7.png"
    assert page.evaluate("document.getElementById('file').files[0].type") == "image/png"
    body = run_page(page)
    assert body["results"][0]["predictions"][0]["label"] == "7"
    assert page.locator("#results .result-item").first.inner_text().lstrip().startswith("handwritten-7.png")
    shot(page, "examples-digits-run")


def test_another_example_replaces_the_chosen_images(session):
    page = session()
    pick_example(page, "handwritten-7.png")
    pick_example(page, "handwritten-3.png")
    assert page.locator("#file-list .file-card").count() == 1
    assert run_page(page)["results"][0]["predictions"][0]["label"] == "3"


def test_the_examples_follow_the_model_picker_and_the_models_url(session):
    page = session()
    for ref in ("remove-bg", "upscale-4x", "edges", "digits"):
        choose_model(page, ref)
        page.wait_for_function(  # every thumbnail loads
            "() => [...document.querySelectorAll('#examples .example img')]"
            ".every((n) => n.complete && n.naturalWidth > 0)"
        )
    choose_model(page, "remove-bg")
    pick_example(page, "bottle-on-white.jpg")
    result = run_page(page)["results"][0]
    assert result["image"].startswith("data:image/png;base64,")
    shot(page, "examples-remove-bg-run")
    linked = session("/?model=upscale-4x")
    assert example_names(linked) == list(MODEL_EXAMPLES["upscale-4x"])


def test_without_javascript_the_examples_are_links_to_the_files(session, live_server):
    page = session("/?model=remove-bg", script=False)
    links = page.locator("#examples a.example")
    assert links.count() == 1 and page.locator("#examples button").count() == 0
    href = links.first.get_attribute("href")
    assert href.endswith("/examples/bottle-on-white.jpg")
    served = requests.get(live_server + href, timeout=30)
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
    assert page.locator("#examples").is_visible() and page.locator("#api-panel").is_hidden()
    assert "save it, then choose it" in page.locator("#examples").inner_text()
    shot(page, "examples-no-js")


# ---- "Use via API" ------------------------------------------------------------------------------------------------


def test_before_a_run_the_snippets_follow_the_form(session):
    page = session()
    page.click("#api-panel summary")
    curl = snippet(page, "curl")
    assert "-F model=digits" in curl and "-F top_k=3" in curl and "-F file=@image.png" in curl
    assert "replace image.png" in page.locator("#api-panel .api-note").inner_text()
    page.fill("#top_k", "5")
    assert "-F top_k=5" in snippet(page, "curl")
    assert 'client.predict("image.png", model="digits", top_k=5)' in snippet(page, "client")
    choose_model(page, "remove-bg")
    curl = snippet(page, "curl")
    assert "-F model=remove-bg" in curl and "top_k" not in curl and "-F output_format=png" in curl
    page.select_option("#background_mode", "color")
    assert "-F 'background=#ffffff'" in snippet(page, "curl")
    pick_example(page, "bottle-on-white.jpg")
    assert "-F file=@bottle-on-white.jpg" in snippet(page, "curl")
    assert 'form.append("file", file, "bottle-on-white.jpg");' in snippet(page, "fetch")
    shot(page, "api-panel-before-run")


CASES = {
    "digits": ("digits", "handwritten-3.png", {"#top_k": "2"}, {}),
    "remove-bg": (
        "remove-bg",
        "bottle-on-white.jpg",
        {"#quality": "80"},
        {"#output_format": "webp", "#background_mode": "color"},
    ),
}


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="curl/bash not installed")
@pytest.mark.parametrize("case", CASES)
def test_the_snippets_reproduce_the_request_the_page_made(session, live_server, tmp_path, case):
    """Run the page, then the curl, requests and ai_service.client snippets it shows (and fetch in the page): same
    answer, ids and timings aside."""
    model, example, fills, selects = CASES[case]
    page = session()
    choose_model(page, model)
    for selector, value in selects.items():
        page.select_option(selector, value)
    for selector, value in fills.items():
        page.fill(selector, value)
    pick_example(page, example)
    page.click("#api-panel summary")
    answer = run_page(page)
    assert page.locator("#api-panel").get_attribute("data-state") == "sent"
    assert "just sent" in page.locator("#api-panel .api-note").inner_text()
    curl = snippet(page, "curl")
    for option in [f"model={model}", *(f"{s[1:]}={v}" for s, v in fills.items()), f"file=@{example}"]:
        assert option in curl, (option, curl)
    if case == "remove-bg":
        assert "output_format=webp" in curl and "'background=#ffffff'" in curl
        assert answer["results"][0]["image"].startswith("data:image/webp;base64,")

    url = next(
        e["url"]
        for e in requests.get(f"{live_server}/api/v1/models/{model}", timeout=30).json()["examples"]
        if e["name"] == example
    )
    (tmp_path / example).write_bytes(requests.get(live_server + url, timeout=30).content)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    commands = {
        "curl": ["bash", "-c", curl],
        "requests": [sys.executable, "-c", snippet(page, "requests")],
        "client": [sys.executable, "-c", snippet(page, "client")],
    }
    outputs = {
        kind: subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        for kind, command in commands.items()
    }
    expected = stable(answer)
    for kind, done in outputs.items():
        assert done.returncode == 0, (kind, done.stderr)
        assert same_answer(json.loads(done.stdout), expected), kind
    code = snippet(page, "fetch")  # run as written, with `file` the example and console.log captured
    fetched = page.evaluate(
        "async (url) => { const out = []; const console = { log: (value) => out.push(value) };"
        f" const file = await (await fetch(url)).blob(); {code}\n return out[0]; }}",
        url,
    )
    assert same_answer(fetched, expected)
    shot(page, f"api-panel-after-run-{case}")


def test_copy_puts_the_snippet_on_the_clipboard(session, live_server):
    page = session(permissions=["clipboard-read", "clipboard-write"])
    page.click("#api-panel summary")
    page.click("#api-panel button[data-copy='requests']")
    page.locator("#api-panel .copy-status", has_text="Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == snippet(page, "requests")


@pytest.mark.parametrize("width", [320, 375])
def test_examples_and_snippets_never_make_the_phone_page_scroll_sideways(session, width):
    for scheme in ("light", "dark"):
        page = session(viewport={"width": width, "height": 812}, scheme=scheme)
        choose_model(page, "upscale-2x")
        page.click("#api-panel summary")
        pick_example(page, "small-landscape.jpg")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if width == 375:
            shot(page, f"examples-phone-{scheme}")
