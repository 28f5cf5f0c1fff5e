"""Draw docs/assets/upload-page.png, the README's and the Web UI page's screenshot, with the browser tests' helpers.

`make docs-screenshot` (Debian's /usr/bin/chromium through Playwright): the upload page on a fresh home, the `digits`
model's handwritten 7 picked from its examples and run, so the picture shows a real answer. Committed; run it again
when the page changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "docs" / "assets" / "upload-page.png"
VIEWPORT = {"width": 1280, "height": 900}


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser_support import launch_chromium, open_page, quiet_app
    from live_server import serve

    with tempfile.TemporaryDirectory(prefix="ai_service-shot-") as home, serve(quiet_app(Path(home))) as base:
        for browser in launch_chromium():
            context, page = open_page(browser, base, "/", viewport=VIEWPORT, color_scheme="light")
            page.locator("#examples button.example[data-name='handwritten-7.png']").click()
            page.locator("#file-list .file-card .file-name", has_text="handwritten-7.png").wait_for()
            page.click("#run")
            page.locator("#results .result-item").first.wait_for()
            page.wait_for_timeout(1500)  # the score bars' transition, the history panel's "saving…"
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(OUTPUT), full_page=False)
            context.close()
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
