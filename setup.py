"""Package metadata: `pip install -e .` gives the `ai_service` package and the `ai-service` command."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="ai_service",
    version="0.1.0",
    description="PyTorch image models behind an upload page and a JSON API",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["ai_service", "ai_service.*"]),
    package_data={
        "ai_service.models.builtin": ["weights/*.pt"],
        "ai_service.storage": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"],
    },
    include_package_data=True,
    install_requires=requirements(),
    entry_points={"console_scripts": ["ai-service = ai_service.cli:main"]},
)
