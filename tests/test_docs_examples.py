"""Every code block a reader would run — in docs/, the generated API reference and README.md — run against a live
server, so an example that stops working fails CI.

How a block is fenced says what happens to it (docs/contributing.md, "Code blocks are tests"):

- ```bash: run by bash with `set -eu`; every `curl` in it must get an answer with an HTTP status below 400 (checked
  from curl itself, so `curl … | head` works: no pipefail, whose SIGPIPE would fail a reader's ordinary pipe).
- ```bash title="Answers 422": run the same way, but it must get that status, and no other of 400 or more.
- ```python: run as a script with the venv's Python; it must exit 0.
- ```sh (commands that cannot run here: `make run`, sudo, systemd, nginx, a broker on another machine, long
  benchmarks), ```text, ```json, ```yaml, ```toml, ```ini, ```nginx: shown, not run.

The server is the app with default settings (and an admin token, also in AI_SERVICE_ADMIN_TOKEN) on a free port;
`http://127.0.0.1:8000` in a block is rewritten to it. Its home holds what `ai-service export-example` writes, as after
a reader's set-up step and restart, so the example models answer. The blocks of a page run in order, in one
temporary folder that links every top-level entry of the repository (repo-relative paths work; outputs go under
/tmp), with the venv first on PATH and AI_SERVICE_HOME set to a fresh home of the page's own (a reader's checkout:
`ai-service export-example` there writes its files for the first time).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from live_server import serve

from ai_service import create_app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(path for path in DOCS.rglob("*.md") if "hooks" not in path.relative_to(DOCS).parts)
README = ROOT / "README.md"
GENERATED_REFERENCE = "docs/api/reference.md (generated)"
ADDRESS = "http://127.0.0.1:8000"
ADMIN_TOKEN = "docs-examples-admin-token"
RUN = {"bash", "python"}
SHOWN = {"sh", "text", "json", "yaml", "toml", "ini", "nginx", "console", "html", "javascript", "csv"}
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M
)
EXPECTED = re.compile(r'title="Answers (\d{3})"')
#: curl reports each response's status on stderr, where the test reads it (the block's own output is untouched).
PRELUDE = "set -eu\ncurl() { command curl --show-error -w '%{stderr}HTTP %{http_code}\\n' \"$@\"; }\n"
TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    attrs: str
    body: str

    @property
    def expected_status(self) -> int | None:
        found = EXPECTED.search(self.attrs)
        return int(found[1]) if found else None


def blocks(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown text, dedented, with the line each starts on."""
    found = []
    for match in FENCE.finditer(text):
        indent = match["indent"]
        body = "".join(line[len(indent) :] for line in match["body"].splitlines(keepends=True))
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, match["lang"], match["attrs"], body))
    return found


def page_name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def runnable(path: Path) -> bool:
    return any(block.lang in RUN for block in blocks(path.read_text(encoding="utf-8"), page_name(path)))


def load_hooks():
    """docs/hooks/pages.py, the generator of the reference page (not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("docs_hooks_pages", DOCS / "hooks" / "pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the live server and the folder the blocks run in ------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    base: str
    home: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    home = tmp_path_factory.mktemp("docs-home") / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AI_SERVICE_")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AI_SERVICE_HOME": str(home),
            "AI_SERVICE_ADMIN_TOKEN": ADMIN_TOKEN,
            "AI_SERVICE_LOG_TO_FILE": "0",
            "AI_SERVICE_LOG_LEVEL": "WARNING",
        }
    )
    prepared = subprocess.run(
        [Path(sys.executable).with_name("ai-service"), "export-example"], env=env, capture_output=True, text=True
    )
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    app = create_app({"home": str(home), "admin_token": ADMIN_TOKEN, "log_level": "WARNING", "log_to_file": False})
    try:
        with serve(app) as base:
            yield Site(base, home, env)
    finally:
        app.extensions["ai_service"].close()


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A folder where every top-level entry of the repository is a link: relative paths work, outputs stay here."""
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def run_block(block: Block, site: Site, workdir: Path) -> None:
    """Run one block; fail with its page, line, output and the statuses its curl calls got."""
    body = block.body.replace(ADDRESS, site.base)
    where = f"{block.page}:{block.line} ({block.lang})"
    if block.lang == "python":
        script = workdir / f"block_{block.line}.py"
        script.write_text(body, encoding="utf-8")
        command = [sys.executable, str(script)]
    else:
        command = ["bash", "-c", PRELUDE + body]
    env = {**site.env, "AI_SERVICE_HOME": str(workdir / "reader-home")}
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    report = f"{where}\n{block.body}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 0, report
    statuses = [int(code) for code in re.findall(r"^HTTP (\d{3})$", done.stderr, re.M)]
    assert 0 not in statuses, report  # curl got no answer at all
    expected = block.expected_status
    if expected is None:
        assert all(status < 400 for status in statuses), report
    else:
        assert expected in statuses, report
        assert all(status < 400 or status == expected for status in statuses), report


# ---- the tests ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [README, *(page for page in PAGES if runnable(page))], ids=page_name)
def test_every_runnable_block_of_a_page_works(path, site, workdir):
    for block in blocks(path.read_text(encoding="utf-8"), page_name(path)):
        if block.lang in RUN:
            run_block(block, site, workdir)


def test_the_generated_api_reference_examples_work(site, workdir):
    document = requests.get(site.base + "/api/v1/openapi.json", timeout=30).json()
    reference = load_hooks().api_reference_markdown(document)
    found = [block for block in blocks(reference, GENERATED_REFERENCE) if block.lang == "bash"]
    assert len(found) >= 8 and sum(site.base in block.body for block in found) >= 8
    for block in found:
        run_block(block, site, workdir)


@pytest.mark.parametrize("path", [README, *PAGES], ids=page_name)
def test_every_block_says_whether_it_runs(path):
    """An unlabelled fence, or a language nobody decided about (`shell`, `py`), would silently never run."""
    for block in blocks(path.read_text(encoding="utf-8"), page_name(path)):
        assert block.lang in RUN | SHOWN, f"{block.page}:{block.line}: fence language {block.lang!r}"


def test_the_block_reader_finds_fences_their_languages_and_titles():
    text = 'Intro\n\n```bash title="Answers 422"\ncurl x\n```\n\n- item\n\n    ```python\n    print(1)\n    ```\n'
    found = blocks(text, "t.md")
    assert [(b.lang, b.line, b.body, b.expected_status) for b in found] == [
        ("bash", 3, "curl x\n", 422),
        ("python", 9, "print(1)\n", None),
    ]
