"""The package rules each `__init__.py` docstring states, checked on every module's imports (parsed with `ast`).

Imports inside functions count; only `if TYPE_CHECKING:` blocks are exempt (they never run). A failure names the
module, the line and the rule: move the code to the package it belongs to rather than exempting it here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ai_service"
FACTORY = "ai_service"  # ai_service/__init__.py: create_app registers the blueprints
FLASK = ("flask", "werkzeug")

#: (package, imports its modules must not make, why). A name is inside a prefix when equal to it or below it.
FORBIDDEN: list[tuple[str, tuple[str, ...], str]] = [
    (
        "ai_service.service",
        (*FLASK, "ai_service.http", "ai_service.api", "ai_service.web"),
        "the service layer is Flask-free: the API, the pages, the CLI and jobs all call it",
    ),
    (
        "ai_service.models",
        (*FLASK, "ai_service.engine", "ai_service.service", "ai_service.http", "ai_service.api", "ai_service.web"),
        "models are the contract and the registry; the engine and the service layer use them, not the reverse",
    ),
    (
        "ai_service.engine",
        (*FLASK, "ai_service.service", "ai_service.http", "ai_service.api", "ai_service.web"),
        "the engine batches forwards for the service layer and knows nothing of requests",
    ),
    ("ai_service.imaging", FLASK, "image functions are pure"),
    (
        "ai_service.storage",
        (
            *FLASK,
            "ai_service.http",
            "ai_service.api",
            "ai_service.web",
            "ai_service.service",
            "ai_service.models",
            "ai_service.engine",
        ),
        "storage keeps rows and files for any feature; it knows no requests, models or service calls",
    ),
    (
        "ai_service.http",
        ("ai_service.models", "ai_service.engine", "ai_service.api", "ai_service.web"),
        "HTTP plumbing reaches models only through the service layer",
    ),
    (
        "ai_service.api",
        ("ai_service.web", "ai_service.models", "ai_service.engine"),
        "API views only translate HTTP to service calls; what the pages share with them lives in ai_service.http",
    ),
    (
        "ai_service.web",
        ("ai_service.api", "ai_service.models", "ai_service.engine"),
        "pages only translate HTTP to service calls; what they share with the API lives in ai_service.http",
    ),
    (
        "ai_service.server",
        ("flask", "ai_service.service", "ai_service.api", "ai_service.web"),
        "gunicorn's master imports this package before any app exists",
    ),
    (
        "ai_service.observability",
        (
            "ai_service.http",
            "ai_service.service",
            "ai_service.api",
            "ai_service.web",
            "ai_service.models",
            "ai_service.engine",
        ),
        "everything reports through observability, so it depends on none of them; hooks get what they need at install",
    ),
    (
        "ai_service.worker",
        (*FLASK, "ai_service.http", "ai_service.api", "ai_service.web"),
        "Celery workers run job chunks through the service layer, without an app or any HTTP",
    ),
    (
        "ai_service.frontends",
        (*FLASK, "ai_service.http", "ai_service.api", "ai_service.web", "ai_service.engine"),
        "the Streamlit and Gradio front-ends call the service layer in-process, as the CLI does, never the HTTP views",
    ),
]

#: (package, the only ai_service packages it may import, why).
ALLOWED: list[tuple[str, tuple[str, ...], str]] = [
    ("ai_service.imaging", ("ai_service.errors", "ai_service.imaging"), "image functions are pure"),
    (
        "ai_service.meshes",
        ("ai_service.errors", "ai_service.imaging", "ai_service.meshes"),
        "mesh functions are pure: limits arrive as MeshLimits, never as settings",
    ),
    (
        "ai_service.models.builtin",
        ("ai_service.models", "ai_service.imaging"),
        "built-in models use the public contract as any plugin would",
    ),
    (
        "ai_service.worker",
        (
            "ai_service.worker",
            "ai_service.service",
            "ai_service.settings",
            "ai_service.storage",
            "ai_service.observability",
            "ai_service.errors",
            "ai_service.server",
        ),
        "a worker is a process around service.jobs.run_chunk: settings, process set-up and placement, nothing else",
    ),
]


@dataclass(frozen=True)
class Import:
    """One imported name (a module, or `module.attribute` for `from module import attribute`)."""

    module: str  # the importing module
    name: str
    line: int
    in_function: bool

    def within(self, prefixes: tuple[str, ...]) -> bool:
        return any(self.name == prefix or self.name.startswith(prefix + ".") for prefix in prefixes)

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.name}"


def module_name(path: Path) -> str:
    """ai_service/http/errors.py -> ai_service.http.errors; app.py -> app; bench/serving.py -> bench.serving."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class ImportCollector(ast.NodeVisitor):
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:`."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.found: list[Import] = []
        self.depth = 0

    def visit_If(self, node: ast.If) -> None:
        if is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(self.module, alias.name, node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        for alias in node.names:
            self.found.append(Import(self.module, f"{base}.{alias.name}", node.lineno, self.depth > 0))


def imports_of(path: Path) -> list[Import]:
    collector = ImportCollector(module_name(path), path.name == "__init__.py")
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return collector.found


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


SOURCES = sorted(PACKAGE.rglob("*.py"))
IMPORTS = [found for path in SOURCES for found in imports_of(path)]
#: Code outside the package that must not reach into the blueprints either (tests may).
ENTRY_POINTS = [ROOT / "app.py", ROOT / "gunicorn.conf.py", *sorted((ROOT / "bench").rglob("*.py"))]


def test_the_scanner_sees_imports_at_every_depth():
    """Guard the guard: top-level, function-level and relative imports are found; TYPE_CHECKING ones are not."""
    assert len(SOURCES) > 50
    names = {(found.module, found.name, found.in_function) for found in IMPORTS}
    assert ("ai_service.api.predict", "ai_service.service.predict.predict", False) in names
    assert ("ai_service", "ai_service.api", True) in names  # create_app imports the blueprints inside the factory
    assert not any(
        found.module == "ai_service.http.context" and found.within(("ai_service.service.runtime",)) for found in IMPORTS
    )  # only under TYPE_CHECKING
    tree = ImportCollector("pkg.sub.mod", False)
    tree.visit(ast.parse("from ..other import thing\nif TYPE_CHECKING:\n    import hidden\nelse:\n    import shown\n"))
    assert [found.name for found in tree.found] == ["pkg.other.thing", "shown"]


def test_every_ruled_package_is_scanned():
    """A rule for a package the scanner never sees (renamed, moved) would pass without checking anything."""
    modules = {module_name(path) for path in SOURCES}
    for package, *_ in FORBIDDEN + ALLOWED:
        assert any(in_package(module, package) for module in modules), package


@pytest.mark.parametrize(("package", "forbidden", "why"), FORBIDDEN, ids=[rule[0] for rule in FORBIDDEN])
def test_packages_never_import_what_their_rule_forbids(package, forbidden, why):
    offending = [str(found) for found in IMPORTS if in_package(found.module, package) and found.within(forbidden)]
    assert not offending, f"{package} must not import {', '.join(forbidden)} ({why}):\n" + "\n".join(offending)


@pytest.mark.parametrize(("package", "allowed", "why"), ALLOWED, ids=[rule[0] for rule in ALLOWED])
def test_packages_import_only_what_their_rule_allows(package, allowed, why):
    offending = [
        str(found)
        for found in IMPORTS
        if in_package(found.module, package) and found.within(("ai_service",)) and not found.within(allowed)
    ]
    assert not offending, f"{package} may import only {', '.join(allowed)} of ai_service ({why}):\n" + "\n".join(
        offending
    )


@pytest.mark.parametrize("blueprint", ["ai_service.api", "ai_service.web"])
def test_only_the_app_factory_imports_the_blueprints(blueprint):
    """Everything else (service, CLI, bench, gunicorn.conf.py) works without the HTTP views."""
    everything = IMPORTS + [found for path in ENTRY_POINTS for found in imports_of(path)]
    offending = [
        str(found)
        for found in everything
        if found.within((blueprint,)) and found.module != FACTORY and not in_package(found.module, blueprint)
    ]
    assert not offending, f"only {FACTORY}.create_app may import {blueprint}:\n" + "\n".join(offending)


def test_only_the_front_ends_import_streamlit_and_gradio():
    """The extras' modules are imported by ai_service.frontends alone, and that package by the CLI alone: the base
    install (the app, workers, jobs) never needs them."""
    extras = ("streamlit", "gradio", "gradio_client")
    offending = [
        str(found) for found in IMPORTS if found.within(extras) and not in_package(found.module, "ai_service.frontends")
    ]
    offending += [
        str(found)
        for found in IMPORTS
        if found.within(("ai_service.frontends",))
        and not in_package(found.module, "ai_service.frontends")
        and not in_package(found.module, "ai_service.cli")
    ]
    assert not offending, "\n".join(offending)
    assert any(found.within(extras) for found in IMPORTS)  # the scanner sees the front-ends' own imports


def test_observability_imports_flask_only_inside_its_request_hooks():
    """Models and the engine record metrics and logs: importing observability must not need Flask."""
    offending = [
        str(found)
        for found in IMPORTS
        if in_package(found.module, "ai_service.observability") and found.within(FLASK) and not found.in_function
    ]
    assert not offending, "\n".join(offending)


def test_http_plumbing_loads_no_torch():
    """Parsing requests, rendering errors and building the OpenAPI document never pull in torch or the models
    (the probes' views call the service layer, which does)."""
    light = sorted(path.stem for path in (PACKAGE / "http").glob("*.py") if path.stem not in ("__init__", "probes"))
    assert {"context", "errors", "inputs", "openapi", "security"} <= set(light)
    code = (
        "import sys\n"
        + "".join(f"import ai_service.http.{name}\n" for name in light)
        + "heavy = sorted(m for m in ('torch', 'ai_service.models', 'ai_service.engine') if m in sys.modules)\n"
        + "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"importing ai_service.http's plumbing loaded {done.stdout.strip()}"
