"""The optional features and the extra that installs each (pyproject.toml's optional-dependencies): a feature whose
module is missing stops the start-up with the pip command that adds it, not with a bare ModuleNotFoundError."""

from __future__ import annotations

import importlib

from ai_service.settings import ConfigError

#: Top-level module -> the extra that installs it.
EXTRA_OF_MODULE = {
    "pymysql": "mysql",
    "psycopg": "postgres",
    "redis": "redis",
    "celery": "celery",
    "kombu": "celery",
    "trimesh": "3d",
    "streamlit": "streamlit",
    "gradio": "gradio",
    "gradio_client": "gradio",
}


class MissingExtra(ConfigError):
    """A setting asks for a feature whose extra is not installed."""


def missing_extra(error: ModuleNotFoundError, feature: str) -> Exception:
    """MissingExtra naming the extra when `error` is about a module an extra installs; else `error` itself."""
    module = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return error
    return MissingExtra(f"{feature} needs {module}, which is not installed: pip install 'ai-service[{extra}]'")


def require(module: str, feature: str) -> None:
    """Import `module` (installed by an extra) now, or raise MissingExtra."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise missing_extra(error, feature) from error
