"""The manual: `mkdocs build --strict` succeeds (so CI fails on a broken link), its generated pages say what the code
says, and `ai-service serve` serves the built site at /guide under a CSP that still allows no other inline code."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from browser_support import launch_chromium, open_page, quiet_app
from live_server import serve

from ai_service.errors import ERRORS
from ai_service.settings import ENV_PREFIX, FLAT_NAMES

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).with_name("mkdocs")
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks_pages", ROOT / "docs" / "hooks" / "pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The manual, built as `make docs` builds it (strict), into a temporary folder."""
    site = tmp_path_factory.mktemp("docs") / "site"
    done = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return site


# ---- the build ------------------------------------------------------------------------------------------------------


def test_the_manual_builds_in_strict_mode_with_every_generated_page(built):
    for page in ("index.html", "api/reference/index.html", "settings/index.html", "deployment/files/index.html"):
        assert (built / page).is_file(), page
    for result in (ROOT / "bench" / "results").glob("*.md"):
        assert (built / "performance" / "results" / result.stem / "index.html").is_file(), result.name
    assert (built / "assets" / "upload-page.png").is_file()
    assert not (built / "hooks").exists(), "the build's own code is not part of the site"


def test_the_settings_page_lists_every_setting(built):
    page = (built / "settings" / "index.html").read_text(encoding="utf-8")
    assert [flat for flat in FLAT_NAMES if f"{ENV_PREFIX}{flat.upper()}" not in page] == []
    assert "<!-- settings-table -->" not in page


def test_the_reference_lists_every_operation_and_error_code(built, client):
    document = client.get("/api/v1/openapi.json").get_json()
    page = (built / "api" / "reference" / "index.html").read_text(encoding="utf-8")
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert f'id="op-{op["operationId"].lower()}"' in page, (method, path)
    assert all(f"<code>{code}</code>" in page for code in ERRORS)


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """The same strictness as mkdocs.yml (theme, extensions, validation) on a page with a broken link and anchor."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    for key in ("nav", "hooks", "exclude_docs"):
        config.pop(key, None)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n[there](missing.md) and [here](#no-such-heading)\n")
    config["docs_dir"] = str(tmp_path / "docs")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "missing.md" in done.stderr and "no-such-heading" in done.stderr


# ---- the generators, without a build --------------------------------------------------------------------------------


def test_the_settings_table_takes_each_meaning_from_the_field_comment():
    table = load_hooks().settings_markdown()
    row = next(line for line in table.splitlines() if line.startswith("| `AI_SERVICE_MAX_QUEUE`"))
    assert "| `64` |" in row and "503 overloaded" in row and "≥ 1" in row
    eviction = next(line for line in table.splitlines() if line.startswith("| `AI_SERVICE_EVICTION`"))
    assert "(one of `auto`, `offload`, `unload`)" in eviction


def test_every_setting_has_a_meaning():
    """A setting without a `#:` comment would be a row without a meaning: write the comment in settings.py."""
    table = load_hooks().settings_markdown()
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith(f"| `{ENV_PREFIX}")]
    assert len(rows) == len(FLAT_NAMES)
    assert [row[0] for row in rows if not re.sub(r"\(.*\)$", "", row[2]).strip()] == []


# ---- /guide ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def guide_client(built, home):
    from ai_service import create_app

    app = create_app({"TESTING": True, "GUIDE_DIR": str(built), "home": str(home), "log_level": "WARNING"})
    yield app.test_client()
    app.extensions["ai_service"].close()


def test_the_guide_serves_the_built_site(guide_client):
    assert guide_client.get("/guide").headers["Location"].endswith("/guide/")
    page = guide_client.get("/guide/")
    assert page.status_code == 200 and "text/html" in page.content_type
    assert "Where to start" in page.get_data(as_text=True)
    policy = page.headers["Content-Security-Policy"]
    assert "'sha256-" in policy and "'unsafe-inline'" not in policy and "object-src 'none'" in policy
    assert guide_client.get("/guide/models/plugins").status_code == 308
    assert '<h1 id="plugins">' in guide_client.get("/guide/models/plugins/").get_data(as_text=True)
    assert guide_client.get("/guide/search/search_index.json").status_code == 200
    css = guide_client.get("/guide/assets/stylesheets/" + next(iter(css_names(guide_client))))
    assert css.status_code == 200 and css.headers["Content-Security-Policy"].startswith("default-src 'none'")


def css_names(guide_client) -> list[str]:
    html = guide_client.get("/guide/").get_data(as_text=True)
    return re.findall(r"assets/stylesheets/([\w.]+\.css)", html)


@pytest.mark.parametrize("path", ["/guide/no-such-page/", "/guide/../setup.py", "/guide/%2e%2e/mkdocs.yml"])
def test_the_guide_serves_nothing_else(guide_client, path):
    response = guide_client.get(path)
    assert response.status_code == 404 and "text/html" in response.content_type


def test_without_a_built_site_the_guide_says_how_to_build_it(home, tmp_path):
    from ai_service import create_app

    app = create_app({"TESTING": True, "GUIDE_DIR": str(tmp_path / "none"), "home": str(home), "log_level": "WARNING"})
    try:
        response = app.test_client().get("/guide/")
        assert response.status_code == 404 and "make docs" in response.get_data(as_text=True)
    finally:
        app.extensions["ai_service"].close()


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


def test_the_guide_renders_in_chromium_without_a_csp_violation(built, browser, tmp_path):
    app = quiet_app(tmp_path / "home", GUIDE_DIR=str(built))
    try:
        with serve(app) as base:
            for path in ("/guide/", "/guide/settings/", "/guide/performance/results/imaging/"):
                context, page = open_page(browser, base, path, ready="nav.md-nav")
                page.wait_for_timeout(300)
                assert page.console_errors == [], (path, page.console_errors)
                context.close()
    finally:
        app.extensions["ai_service"].close()
