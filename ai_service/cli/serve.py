"""`ai-service serve`: the upload page and the API under gunicorn, with the configuration shipped in the package."""

from __future__ import annotations

import argparse
import os
import sys

#: Options that set a setting: (option, flat name). They go through the environment, so gunicorn's master and
#: every worker read the same value from the one settings model.
SETTING_OPTIONS = (("bind", "bind"), ("workers", "workers"), ("threads", "threads"), ("home", "home"))


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve the upload page and the API (gunicorn, production configuration)",
        description="Serve under gunicorn with the production configuration (ai_service/server/gunicorn_config.py). "
        "Every other setting comes from AI_SERVICE_* variables or AI_SERVICE_CONFIG, as for `make run`.",
    )
    parser.add_argument("--bind", metavar="HOST:PORT", help="where to listen (AI_SERVICE_BIND, default 127.0.0.1:8000)")
    parser.add_argument("--workers", type=int, metavar="N", help="worker processes; 0 = one per core or GPU")
    parser.add_argument("--threads", type=int, metavar="N", help="request threads per worker")
    parser.add_argument("--home", help="service home: models/, var/, logs/ (AI_SERVICE_HOME)")
    parser.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Check the settings (a bad one is reported here, in one line), then run gunicorn until it exits."""
    from ai_service.settings import ConfigError, load_settings

    for option, flat in SETTING_OPTIONS:
        value = getattr(args, option)
        if value is not None:
            os.environ[f"AI_SERVICE_{flat.upper()}"] = str(value)
    try:
        load_settings()
    except ConfigError as error:
        print(f"ai-service serve: {error}", file=sys.stderr)
        return 2
    from ai_service.server.serve import serve

    serve()
    return 0
