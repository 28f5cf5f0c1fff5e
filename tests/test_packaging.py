"""Installed like a library: `python -m build` gives an sdist and a wheel that twine accepts, the sdist rebuilds the
same wheel, and the wheel, installed into a fresh virtual environment outside the checkout, serves from any directory
with its home in Flask's instance folder and nothing written into site-packages.

The fresh environment reuses this checkout's installed packages (torch is gigabytes) through a `.pth` file that
appends .venv's site-packages to its path: a venv without pip of its own (ensurepip's old setuptools would shadow
the one torch needs), into which this interpreter's pip installs the wheel with `--no-index`, so every dependency the
wheel declares must already be satisfied there. .pth lines only extend the path: .venv's own .pth files, among them
the checkout's editable install, are not run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from conftest import encode
from live_gunicorn import free_port

from ai_service import __version__
from ai_service.cli import main
from ai_service.cli.worker import worker_command
from ai_service.extras import MissingExtra, require
from ai_service.models.builtin.digits_training import render_digit
from ai_service.models.builtin.make_examples import GENERATORS
from ai_service.server.gunicorn_config import UNIX_PATH_MAX, control_socket, gunicorn_config
from ai_service.settings import load_settings
from ai_service.storage.database import connect

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = {"mysql", "postgres", "redis", "celery", "3d", "streamlit", "gradio", "dev"}
#: Extras of front-ends that run beside the service, not in it: requirements-dev.txt installs them (for their tests),
#: requirements.txt (what the service runs with) does not.
FRONTEND_EXTRAS = {"streamlit", "gradio"}
#: Modules only an extra installs: the base install (SQLite history, no broker) must serve without importing any.
EXTRA_MODULES = {"pymysql", "psycopg", "redis", "celery", "kombu", "trimesh", "streamlit", "gradio", "gradio_client"}
START_SECONDS = 120


def run(*command: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run a command; its output in the assertion message when it fails."""
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def requirement_name(line: str) -> str:
    """The normalized project name of a requirement line ("psycopg[binary]>=3.2  # x" -> "psycopg")."""
    return re.split(r"[\s\[<>=!~;]", line.split("#")[0].strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirement_names(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {requirement_name(line) for line in lines if line.split("#")[0].strip() and not line.startswith("-")}


def wheel_digests(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as wheel:
        return {name: hashlib.sha256(wheel.read(name)).hexdigest() for name in wheel.namelist()}


def checkout_entries() -> set[str]:
    """What the checkout's top level holds (a build must not add build/ or *.egg-info/ there)."""
    return {path.name for path in ROOT.iterdir()}


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """sdist + wheel from `python -m build` (the wheel built from the sdist), and a wheel built from the tree."""
    out = tmp_path_factory.mktemp("dist")
    before = checkout_entries()
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out / "from-sdist", ROOT)
    run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out / "from-tree", ROOT)
    assert checkout_entries() == before, "the build wrote into the checkout"
    (wheel,) = (out / "from-sdist").glob("*.whl")
    (sdist,) = (out / "from-sdist").glob("*.tar.gz")
    (tree_wheel,) = (out / "from-tree").glob("*.whl")
    return {"wheel": wheel, "sdist": sdist, "tree_wheel": tree_wheel}


def test_pyproject_has_the_metadata_a_library_needs():
    project = PYPROJECT["project"]
    for key in ("name", "description", "readme", "license", "classifiers", "requires-python", "dependencies"):
        assert project.get(key), key
    assert project["scripts"] == {"ai-service": "ai_service.cli:main"}
    assert set(project["optional-dependencies"]) == EXTRAS
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"


def test_requirements_and_pyproject_name_the_same_packages():
    """requirements.txt pins what `make` installs; pyproject.toml's ranges must cover exactly those packages."""
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    base = {requirement_name(line) for line in project["dependencies"]}
    runtime = {name for name in extras if name not in FRONTEND_EXTRAS | {"dev"}}
    optional = {requirement_name(line) for name in runtime for line in extras[name]}
    frontends = {requirement_name(line) for name in FRONTEND_EXTRAS for line in extras[name]}
    dev = {requirement_name(line) for line in extras["dev"]} - {"ai-service"}
    assert requirement_names(ROOT / "requirements.txt") == base | optional
    assert requirement_names(ROOT / "requirements-dev.txt") == dev | frontends
    assert not base & optional, "a package is both required and optional"
    assert {line.split("[")[1].split("]")[0] for line in extras["dev"] if line.startswith("ai-service[")} == {
        "mysql,postgres,redis,celery,3d,streamlit,gradio"
    }


def test_build_gives_an_sdist_and_a_wheel_that_twine_accepts(dists):
    run(sys.executable, "-m", "twine", "check", "--strict", dists["sdist"], dists["wheel"])
    assert dists["wheel"].name == f"ai_service-{__version__}-py3-none-any.whl"


def test_the_sdist_rebuilds_the_same_wheel(dists):
    assert wheel_digests(dists["wheel"]) == wheel_digests(dists["tree_wheel"])
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "setup.py", "README.md", "LICENSE", "templates/index.html", "static/app.js"} <= names
    assert "tests/conftest.py" in names and not any(name.endswith(".pyc") for name in names)


def test_the_wheel_carries_templates_static_weights_and_migrations(dists):
    names = set(wheel_digests(dists["wheel"]))
    tracked = run("git", "ls-files", "templates", "static").split()
    assert tracked and {f"ai_service/{name}" for name in tracked} <= names
    assert "ai_service/models/builtin/weights/digits.pt" in names and "ai_service/py.typed" in names
    examples = {name.rsplit("/", 1)[1] for name in names if name.startswith("ai_service/models/builtin/examples/")}
    assert examples == set(GENERATORS)  # every example input the built-in models offer, made by make_examples
    assert any(name.startswith("ai_service/storage/migrations/versions/") for name in names)
    assert not any(name.startswith(("tests/", "bench/", "templates/", "static/")) for name in names)
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        metadata = wheel.read(f"ai_service-{__version__}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"ai_service-{__version__}.dist-info/entry_points.txt").decode()
    assert f"Version: {__version__}" in metadata and "Requires-Python: >=3.11" in metadata
    assert {line.split(": ")[1] for line in metadata.splitlines() if line.startswith("Provides-Extra")} == EXTRAS
    assert "ai-service = ai_service.cli:main" in entry_points


# ---- the installed wheel ------------------------------------------------------------------------------------------


@dataclass
class Installed:
    venv: Path
    site_packages: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def instance(self) -> Path:
        """Flask's instance folder for a package installed under this prefix."""
        return self.venv / "var" / "ai_service-instance"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under a folder with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


def clean_env(**settings: str) -> dict[str, str]:
    """The environment without this checkout's AI_SERVICE_* settings (an installed copy knows none of them)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AI_SERVICE_", "PROMETHEUS_"))}
    env.pop("PYTHONPATH", None)
    env.update(settings)
    return env


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> Installed:
    """The wheel installed into a fresh venv outside the checkout, reusing .venv's packages (see the module doc)."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    run(Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", "--without-pip", venv)
    site_packages = Path(
        run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    checkout_site = Path(run(sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site_packages / "reuse_checkout_packages.pth").write_text(f"{checkout_site}\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--no-index",
        "--quiet",
        dists["wheel"],
    )
    return Installed(venv, site_packages)


@dataclass
class Served:
    base: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(
    installed: Installed, cwd: Path, options: tuple[str, ...] = ("--workers", "1"), **settings: str
) -> Iterator[Served]:
    """`ai-service serve --bind 127.0.0.1:PORT [options]` of the installed copy, run from `cwd`; SIGTERM at exit."""
    cwd.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = cwd.parent / f"{cwd.name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [installed.bin / "ai-service", "serve", "--bind", f"127.0.0.1:{port}", *options],
            cwd=cwd,
            env=clean_env(**settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert process.poll() is None, "ai-service serve exited early:\n" + served.output()[-4000:]
            try:
                if requests.get(served.base + "/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or too busy to answer within the timeout
                pass
            assert time.monotonic() < deadline, "not ready in time:\n" + served.output()[-4000:]
            time.sleep(0.3)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def control_stats(path: Path) -> dict:
    """`gunicornc show stats` over one instance's control socket."""
    gunicornc = Path(sys.executable).with_name("gunicornc")
    return json.loads(run(gunicornc, "-s", path, "-c", "show stats", "-j"))


def test_the_installed_wheel_serves_from_any_directory(installed, tmp_path, digits_split):
    assert run(installed.bin / "ai-service", "--version").strip() == f"ai-service {__version__}"
    assert (
        run(installed.bin / "python", "-m", "ai_service", "--version", cwd=tmp_path).strip()
        == f"ai-service {__version__}"
    )
    where = run(installed.bin / "python", "-c", "import ai_service; print(ai_service.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(installed.site_packages)
    before = snapshot(installed.site_packages)
    elsewhere = tmp_path / "elsewhere"
    with serving(installed, elsewhere) as server:
        page = requests.get(server.base + "/", timeout=30)
        assert page.status_code == 200 and "<form" in page.text
        assets = set(re.findall(r'(?:src|href)="(/static/[^"?]+)', page.text))
        assert any(asset.endswith(".js") for asset in assets) and any(asset.endswith(".css") for asset in assets)
        for asset in assets:
            assert requests.get(server.base + asset, timeout=30).status_code == 200, asset
        right = 0
        for pixels, label in zip(digits_split.test_images[:10], digits_split.test_labels[:10]):
            png = encode(render_digit(pixels, 64))
            answer = requests.post(
                server.base + "/api/v1/predict", files={"file": ("digit.png", png, "image/png")}, timeout=60
            )
            assert answer.status_code == 200, answer.text
            right += answer.json()["results"][0]["predictions"][0]["label"] == str(label)
        assert right >= 9, f"{right} of 10 digits right"
        socket_path = installed.instance / "var" / "gunicorn.ctl"
        assert control_stats(socket_path)["pid"] == server.process.pid
    assert "home=" + str(installed.instance) in server.output()
    logs = list((installed.instance / "logs").glob("*.log"))
    assert logs and any("POST /api/v1/predict 200" in log.read_text() for log in logs)
    with sqlite3.connect(installed.instance / "var" / "ai_service.db") as db:
        assert db.execute("SELECT count(*) FROM predictions WHERE model = 'digits'").fetchone()[0] == 10
    assert snapshot(installed.site_packages) == before, "something was written into site-packages"
    assert not any(elsewhere.iterdir()), "the service wrote into its working directory"


def test_the_base_install_serves_without_the_extras(installed, tmp_path):
    """Built-in models, SQLite history, no broker: none of the extras' modules is imported."""
    code = (
        "import sys; from ai_service import create_app; app = create_app(); "
        "client = app.test_client(); assert client.get('/readyz').status_code == 200; "
        f"print(sorted(set({sorted(EXTRA_MODULES)!r}) & set(sys.modules)))"
    )
    out = run(installed.bin / "python", "-c", code, cwd=tmp_path, env=clean_env(AI_SERVICE_HOME=str(tmp_path / "home")))
    assert out.strip().splitlines()[-1] == "[]"


def test_two_instances_side_by_side_each_have_their_own_control_socket(installed, tmp_path):
    homes = [tmp_path / "one", tmp_path / "two"]
    with serving(installed, tmp_path / "cwd-one", AI_SERVICE_HOME=str(homes[0])) as one:
        with serving(installed, tmp_path / "cwd-two", AI_SERVICE_HOME=str(homes[1])) as two:
            for home, server in zip(homes, (one, two)):
                assert control_stats(home / "var" / "gunicorn.ctl")["pid"] == server.process.pid
    off = tmp_path / "off"
    with serving(installed, tmp_path / "cwd-off", AI_SERVICE_HOME=str(off), AI_SERVICE_CONTROL_SOCKET="0") as server:
        assert requests.get(server.base + "/readyz", timeout=10).status_code == 200
        assert not (off / "var" / "gunicorn.ctl").exists()
    assert "Control socket" not in server.output()


def test_the_control_socket_follows_the_home_and_the_setting(tmp_path):
    assert control_socket(load_settings({"home": str(tmp_path)})) == tmp_path / "var" / "gunicorn.ctl"
    assert control_socket(load_settings({"home": str(tmp_path), "control_socket": False})) is None
    deep = tmp_path / ("d" * (UNIX_PATH_MAX - len(str(tmp_path))))
    assert control_socket(load_settings({"home": str(deep)})) is None  # too long for a socket address: none
    config = gunicorn_config(load_settings({"home": str(tmp_path), "control_socket": False}))
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert config["control_socket_disable"] is True and "control_socket" not in config


def test_a_checkout_keeps_its_home_and_finds_its_assets():
    from ai_service.settings import ASSETS_DIR, PROJECT_ROOT, default_home

    assert default_home() == PROJECT_ROOT and ASSETS_DIR == PROJECT_ROOT


@pytest.mark.parametrize(
    ("module", "extra", "start"),
    [
        ("pymysql", "mysql", lambda: connect("mysql+pymysql://root@127.0.0.1/test")),
        ("psycopg", "postgres", lambda: connect("postgresql+psycopg://root@127.0.0.1/test")),
        ("redis", "redis", lambda: require("redis", "AI_SERVICE_REDIS_URL")),
        ("celery", "celery", lambda: worker_command(["--help"])),
    ],
)
def test_a_feature_without_its_extra_names_the_pip_command(monkeypatch, module, extra, start):
    """As if the extra were not installed (the module cannot be imported): start-up says what to install."""
    for name in [name for name in sys.modules if name == module or name.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)
    for name in [name for name in sys.modules if name.startswith("ai_service.worker")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingExtra, match=re.escape(f"pip install 'ai-service[{extra}]'")):
        start()


@pytest.mark.parametrize(
    ("module", "extra", "argv"),
    [("streamlit", "streamlit", ["dashboard", "--streamlit"]), ("gradio", "gradio", ["gradio"])],
)
def test_a_front_end_without_its_extra_names_the_pip_command(monkeypatch, capsys, module, extra, argv):
    """The front-end commands check their extra before anything starts, and say what to install."""
    monkeypatch.setitem(sys.modules, module, None)
    assert main(argv) == 2
    assert f"pip install 'ai-service[{extra}]'" in capsys.readouterr().err


def test_sighup_reads_the_settings_again(installed, tmp_path):
    """A reload (systemctl reload) applies a changed config file: the packaged configuration is built per load."""
    config = tmp_path / "ai_service.toml"
    config.write_text("workers = 1\n")
    home = tmp_path / "home"
    settings = {"AI_SERVICE_HOME": str(home), "AI_SERVICE_CONFIG": str(config)}
    with serving(installed, tmp_path / "cwd", (), **settings) as server:  # workers from the file only
        socket_path = home / "var" / "gunicorn.ctl"
        assert control_stats(socket_path)["workers_target"] == 1
        config.write_text("workers = 2\n")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while (stats := control_stats(socket_path))["workers_current"] != 2:
            assert time.monotonic() < deadline, f"{stats}\n{server.output()[-3000:]}"
            time.sleep(0.5)
        assert stats["reloads"] == 1 and stats["workers_target"] == 2
