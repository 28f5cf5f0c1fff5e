"""What every in-process command shares: the settings the server would read, and a runtime built from them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_service.service.runtime import Runtime
    from ai_service.settings import Settings


def load_cli_settings(home: str | None, overrides: dict[str, Any] | None = None) -> Settings:
    """The settings the server would read (env, config file), with --home when given, logging to the console only."""
    from ai_service.observability.logging import setup_logging
    from ai_service.settings import load_settings

    values: dict[str, Any] = {"log_to_file": False, **(overrides or {})}
    if home:
        values["home"] = home
    settings = load_settings(values)
    setup_logging(settings)
    return settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    """`load_cli_settings` for a command with a --home option."""
    return load_cli_settings(args.home)


def local_runtime(args: argparse.Namespace) -> Runtime:
    """What the server would build, in this process (nothing loaded yet), which it configures like a worker."""
    from ai_service.server.process import configure_process
    from ai_service.service.runtime import build_runtime

    settings = settings_from_args(args)
    configure_process(settings)
    return build_runtime(settings, run_jobs=False)
