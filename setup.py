"""What pyproject.toml cannot say: the top-level templates/ and static/ (and the manual, site/, when `make docs`
built it) go into the package when it is built, and builds leave nothing in the checkout. Everything else (name,
dependencies, extras, scripts) is in pyproject.toml."""

import atexit
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: Folders kept at the top of the repository (the design card's layout) and shipped inside the package.
ASSETS = ("templates", "static")
#: The built manual (`make docs`), shipped as ai_service/guide/ when present.
MANUAL = "site"
#: setuptools' build/ and *.egg-info/ go here, not into the checkout (a stale build/ could also leak deleted
#: files into the next wheel); removed when the build ends.
SCRATCH = Path(tempfile.mkdtemp(prefix="ai_service-build-"))
atexit.register(shutil.rmtree, SCRATCH, True)


class BuildPy(build_py):
    """build_py that also copies templates/ and static/ into ai_service/ (an editable install reads them in place)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for folder in ASSETS:
            self.copy_tree(str(HERE / folder), str(Path(self.build_lib) / "ai_service" / folder))
        if (HERE / MANUAL / "index.html").is_file():  # `make docs` ran: installed copies serve it at /guide
            self.copy_tree(str(HERE / MANUAL), str(Path(self.build_lib) / "ai_service" / "guide"))


setup(
    cmdclass={"build_py": BuildPy},
    options={"build": {"build_base": str(SCRATCH / "build")}, "egg_info": {"egg_base": str(SCRATCH)}},
)
