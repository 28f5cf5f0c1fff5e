"""GET /guide/…: the manual (docs/, built by `make docs`), so a running service, installed copies too, carries it.

The built site is static files: a checkout serves site/, an installed wheel the copy setup.py puts in the package
(ai_service/guide/). The theme writes a few inline scripts (and the tables inline alignments), so each page's
Content-Security-Policy is the pages' own strict one plus the hashes of exactly those.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from flask import current_app, redirect, send_file
from werkzeug.security import safe_join

from ai_service.errors import ServiceError
from ai_service.http.security import HTML_CSP
from ai_service.settings import ASSETS_DIR, PACKAGE_DIR, PROJECT_ROOT
from ai_service.web import bp

#: Executed inline scripts (JSON data blocks are not executed, so they need no hash).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>", re.S)
INLINE_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
STYLE_ATTRIBUTE = re.compile(r'\sstyle="([^"]*)"')


def site_dir() -> Path:
    """Where the built manual is: GUIDE_DIR in the app's config (tests), the package's copy once installed, or the
    checkout's site/."""
    configured = current_app.config.get("GUIDE_DIR")
    if configured:
        return Path(configured)
    return PACKAGE_DIR / "guide" if ASSETS_DIR == PACKAGE_DIR else PROJECT_ROOT / "site"


@bp.get("/guide")
def guide_root():
    return redirect("/guide/", code=308)


@bp.get("/guide/", defaults={"page": ""})
@bp.get("/guide/<path:page>")
def guide(page: str):
    root = site_dir()
    if not (root / "index.html").is_file():
        raise ServiceError("not_found", "The manual is not built here: run `make docs` (then `make dist`) to add it.")
    found = safe_join(str(root), page)
    path = Path(found) if found else None
    if path is not None and path.is_dir():
        if page and not page.endswith("/"):
            return redirect(f"/guide/{page}/", code=308)
        path = path / "index.html"
    if path is None or not path.is_file():
        raise ServiceError("not_found", f"The manual has no page /guide/{page}.")
    response = send_file(path, max_age=0 if path.suffix == ".html" else 3600)
    if path.suffix == ".html":
        response.headers["Content-Security-Policy"] = page_policy(str(path), path.stat().st_mtime_ns)
    return response


def _hashes(texts: list[str]) -> str:
    digests = {base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() for text in texts}
    return "".join(f" 'sha256-{digest}'" for digest in sorted(digests))


@lru_cache(maxsize=256)
def page_policy(path: str, mtime_ns: int) -> str:
    """HTML_CSP with script-src and style-src extended by the hashes of this page's inline code (cached per version)."""
    html = Path(path).read_text(encoding="utf-8")
    scripts = _hashes(INLINE_SCRIPT.findall(html))
    styles = _hashes(INLINE_STYLE.findall(html))
    attributes = STYLE_ATTRIBUTE.findall(html)
    style_source = "'self'" + styles + (" 'unsafe-hashes'" + _hashes(attributes) if attributes else "")
    return HTML_CSP.replace("script-src 'self'", "script-src 'self'" + scripts).replace(
        "style-src 'self'", "style-src " + style_source
    )
