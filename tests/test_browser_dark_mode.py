"""The dark color scheme in a real browser: pages follow prefers-color-scheme and keep WCAG AA text contrast.

Playwright emulates the visitor's system setting (new_context(color_scheme=...)); colors are read back with
getComputedStyle, the background under each text is composited up the ancestor chain, and the WCAG 2 contrast
ratio is computed here. Without /usr/bin/chromium the module skips locally and fails under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_support import launch_chromium, live_app_server, open_page

AA_TEXT = 4.5
AA_LARGE_TEXT = 3.0  # WCAG: 24px, or 18.66px bold, and larger
TODAYS_LIGHT_BG = (243, 245, 248)  # #f3f5f8
TIMEOUT_MS = 15_000

# colorPair(element) -> [text rgba, background rgba]: the background is every ancestor's background color
# composited from the root down, over the canvas color of the page's scheme.
COLOR_PAIR_JS = """
const colorPair = (element) => {
  const parse = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) throw new Error("unexpected color " + text);
    const [r, g, b, a = "1"] = m[1].split(/[ ,\\/]+/).filter(Boolean);
    return [+r, +g, +b, +a];
  };
  const over = (top, under) => {
    const a = top[3] + under[3] * (1 - top[3]);
    return [0, 1, 2].map((i) => (top[i] * top[3] + under[i] * under[3] * (1 - top[3])) / a).concat([a]);
  };
  const layers = [];
  for (let node = element; node; node = node.parentElement) {
    const color = parse(getComputedStyle(node).backgroundColor);
    layers.push(color);
    if (color[3] === 1) break;
  }
  const dark = matchMedia("(prefers-color-scheme: dark)").matches;
  let background = dark ? [18, 18, 18, 1] : [255, 255, 255, 1];
  for (const layer of layers.reverse()) background = over(layer, background);
  return [parse(getComputedStyle(element).color), background];
};
"""

# Every visible element that directly holds text, with its colors; skips what WCAG exempts (disabled controls)
# and what has no single background color (text over images or gradients, or under a translucent ancestor).
TEXT_COLORS_JS = (
    "() => {"
    + COLOR_PAIR_JS
    + """
  const found = [];
  for (const element of document.body.querySelectorAll("*")) {
    const text = [...element.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent).join("").trim();
    if (!text || !element.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    if (element.closest(":disabled, option, .compare, .overlay-frame, .box-labels")) continue;
    let plain = true;
    for (let node = element; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.backgroundImage !== "none" || parseFloat(style.opacity) < 1) { plain = false; break; }
    }
    if (!plain) continue;
    const style = getComputedStyle(element);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight, 10) >= 700);
    const [textColor, background] = colorPair(element);
    found.push({ label: `${element.tagName.toLowerCase()}.${element.className} "${text.slice(0, 30)}"`, large,
                 text: textColor, background });
  }
  return found;
}"""
)


def luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB color (0-255 channels)."""

    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(text_rgba, background_rgb) -> float:
    """WCAG 2 contrast ratio of (possibly translucent) text over an opaque background."""
    alpha = text_rgba[3]
    text = [t * alpha + b * (1 - alpha) for t, b in zip(text_rgba[:3], background_rgb[:3])]
    high, low = sorted((luminance(text), luminance(background_rgb)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[str]:
    """The real app plus the test-double models (so every task badge shows in the model list) on a free port."""
    yield from live_app_server(tmp_path_factory, "dark", doubles=True)


@pytest.fixture(params=["dark", "light"])
def scheme(request) -> str:
    """The visitor's system setting that the browser context emulates."""
    return request.param


def scheme_page(browser, base: str, path: str, scheme: str):
    """A page on `path` with the system color scheme emulated; scripted pages are waited for."""
    return open_page(browser, base, path, ready=path == "/", timeout_ms=TIMEOUT_MS, color_scheme=scheme)


def colors(page, selector: str) -> tuple[list[float], list[float]]:
    """(text rgba, effective background rgba) of the first element matching `selector`."""
    locator = page.locator(selector).first
    locator.wait_for(state="attached")
    return tuple(locator.evaluate("(element) => {" + COLOR_PAIR_JS + " return colorPair(element); }"))


def pair_ratio(page, selector: str) -> float:
    text, background = colors(page, selector)
    return contrast(text, background)


# (page, what, selector): the text pairs that must reach WCAG AA in both schemes.
KEY_PAIRS = [
    ("/", "body text on body background", "body"),
    ("/", "muted text on a card", ".input-card .lede"),
    ("/", "link on a card", ".input-card .link-like"),
    ("/", "primary button text", "#run"),
    ("/", "task badge", "#model-info .badge"),
    ("/", "footer link on the page", ".site-footer a"),
    ("/docs", "body text on body background", "body"),
    ("/docs", "muted text on a card", "#intro h1 .muted"),
    ("/docs", "link on a card", "#intro p a"),
    ("/docs", "primary button text", ".try button.primary"),
    ("/docs", "code example", ".code-block pre"),
]


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_page_background_follows_the_system_scheme(browser, live_server, scheme, path):
    context, page = scheme_page(browser, live_server, path, scheme)
    try:
        text, background = colors(page, "body")
        meta = page.get_attribute("meta[name=color-scheme]", "content")
        root_scheme = page.evaluate("getComputedStyle(document.documentElement).colorScheme")
        card_text, card = colors(page, ".card")
    finally:
        context.close()
    assert "dark" in meta and "light" in meta and "dark" in root_scheme
    if scheme == "dark":
        assert luminance(background) < 0.2, background
        assert luminance(text) > 0.6, text
        assert luminance(card) < 0.2 and luminance(card_text) > 0.6, (card, card_text)
    else:
        assert tuple(round(c) for c in background[:3]) == TODAYS_LIGHT_BG
        assert tuple(round(c) for c in card[:3]) == (255, 255, 255)
        assert luminance(text) < 0.1


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_key_text_pairs_reach_wcag_aa(browser, live_server, scheme, path):
    context, page = scheme_page(browser, live_server, path, scheme)
    try:
        ratios = {what: pair_ratio(page, selector) for where, what, selector in KEY_PAIRS if where == path}
    finally:
        context.close()
    low = {what: round(ratio, 2) for what, ratio in ratios.items() if ratio < AA_TEXT}
    assert not low, f"{scheme} {path}: below {AA_TEXT}:1: {low} (all: {ratios})"


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_every_visible_text_reaches_wcag_aa(browser, live_server, scheme, path):
    """A sweep for what the key pairs miss, such as light text left on a white box in the dark scheme."""
    context, page = scheme_page(browser, live_server, path, scheme)
    try:
        found = page.evaluate(TEXT_COLORS_JS)
    finally:
        context.close()
    low = [
        f"{item['label']}: {contrast(item['text'], item['background']):.2f}"
        for item in found
        if contrast(item["text"], item["background"]) < (AA_LARGE_TEXT if item["large"] else AA_TEXT)
    ]
    assert len(found) > 20, found
    assert not low, f"{scheme} {path}: text below WCAG AA: {low}"


INK = (20, 20, 20, 1)  # the dark ink of a digit on a transparent background (conftest's alpha.png)


def test_canvas_and_checkerboard_keep_dark_ink_visible(browser, live_server, scheme):
    """The drawing canvas stays white paper for black ink; a transparency checkerboard shows dark ink in both
    schemes."""
    context, page = scheme_page(browser, live_server, "/", scheme)
    try:
        canvas_background = colors(page, "#digit-canvas")[1]
        checker = page.evaluate("""() => {
          const probe = document.createElement("div");
          probe.className = "checker";
          document.body.append(probe);
          const base = getComputedStyle(probe).backgroundColor;
          probe.style.backgroundColor = getComputedStyle(probe).getPropertyValue("--checker");
          const squares = getComputedStyle(probe).backgroundColor;
          probe.remove();
          return [base, squares];
        }""")
    finally:
        context.close()
    assert tuple(round(c) for c in canvas_background[:3]) == (255, 255, 255)
    for color in checker:
        rgb = [int(part) for part in color[color.index("(") + 1 : color.index(")")].split(",")[:3]]
        assert contrast(INK, rgb) >= AA_TEXT, (scheme, color)
