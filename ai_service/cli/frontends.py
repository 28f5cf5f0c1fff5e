"""`ai-service dashboard [--streamlit]` and `ai-service gradio`: the front-ends of the optional extras.

`dashboard --streamlit` runs Streamlit (headless, usage statistics off) on ai_service/frontends/streamlit_app.py with
the settings' database; plain `dashboard` says where the server's own /dashboard page is. `gradio` builds a runtime
as `serve` would and serves a tab per model (ai_service/frontends/gradio_app.py) in this process. A missing extra
ends the command with the pip command that installs it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ai_service.cli.common import local_runtime, settings_from_args

if TYPE_CHECKING:
    from ai_service.settings import Settings

#: The Streamlit script, run by `streamlit run` (not imported by this package).
STREAMLIT_APP = Path(__file__).resolve().parent.parent / "frontends" / "streamlit_app.py"


def add_frontend_commands(commands: argparse._SubParsersAction) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="the history dashboard: where the server's page is, or --streamlit for the analysts' app",
        description="The operators' dashboard is the server's /dashboard page. --streamlit starts the analysts' "
        "Streamlit app over the same history database (pip install 'ai-service[streamlit]').",
    )
    dashboard.add_argument("--streamlit", action="store_true", help="run the Streamlit app over the history")
    dashboard.add_argument("--host", default="127.0.0.1", help="where Streamlit listens (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8501, help="Streamlit's port (default 8501)")
    dashboard.add_argument("--home", help="service home whose settings name the database (AI_SERVICE_HOME)")
    dashboard.set_defaults(handler=dashboard_command)
    gradio = commands.add_parser(
        "gradio",
        help="a Gradio demo with a tab per model, calling the models in this process",
        description="Serve a Gradio app generated from the model registry: a tab per model, its examples, and "
        "every prediction recorded in the history like the API's (pip install 'ai-service[gradio]').",
    )
    gradio.add_argument("--host", default="127.0.0.1", help="where Gradio listens (default 127.0.0.1)")
    gradio.add_argument("--port", type=int, default=7860, help="Gradio's port (default 7860)")
    gradio.add_argument("--model", action="append", metavar="REF", help="only this model (repeat for several)")
    gradio.add_argument("--home", help="service home: models/, var/, logs/ (AI_SERVICE_HOME)")
    gradio.set_defaults(handler=gradio_command)


def missing(module: str, command: str) -> str | None:
    """The message with the pip command when `module`'s extra is not installed, else None."""
    from ai_service.extras import MissingExtra, require

    try:
        require(module, command)
    except MissingExtra as error:
        return f"ai-service {command}: {error}"
    return None


def checked_settings(args: argparse.Namespace, command: str) -> Settings | None:
    """The settings, or None once a bad one has been reported in one line (as `serve` does)."""
    from ai_service.settings import ConfigError

    try:
        return settings_from_args(args)
    except ConfigError as error:
        print(f"ai-service {command}: {error}", file=sys.stderr)
        return None


def dashboard_command(args: argparse.Namespace) -> int:
    """Point at the built-in page, or replace this process with `streamlit run` on the app."""
    if not args.streamlit:
        bind = settings_from_args(args).server.bind
        print(f"The dashboard is a page of the server: http://{bind}/dashboard (ai-service serve).")
        print("For the analysts' Streamlit app over the same history: ai-service dashboard --streamlit")
        return 0
    if problem := missing("streamlit", "dashboard --streamlit"):
        print(problem, file=sys.stderr)
        return 2
    if checked_settings(args, "dashboard") is None:  # a bad setting: one line here, not a traceback in the page
        return 2
    if args.home:
        os.environ["AI_SERVICE_HOME"] = args.home
    os.environ["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    # The address it prints: named, so that Streamlit never asks checkip.amazonaws.com for a public one.
    shown = socket.getfqdn() if args.host in ("", "0.0.0.0", "::") else args.host
    command = [sys.executable, "-m", "streamlit", "run", str(STREAMLIT_APP)]
    command += ["--server.address", args.host, "--server.port", str(args.port), "--server.headless", "true"]
    command += ["--browser.serverAddress", shown, "--browser.serverPort", str(args.port)]
    command += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    command += ["--client.toolbarMode", "minimal"]  # no Deploy button (Streamlit Community Cloud)
    sys.stdout.flush()
    os.execv(sys.executable, command)  # Streamlit owns the process from here: signals reach it directly


def gradio_command(args: argparse.Namespace) -> int:
    """Build the runtime (nothing loaded until a tab is used) and serve the Gradio app until interrupted."""
    if problem := missing("gradio", "gradio"):
        print(problem, file=sys.stderr)
        return 2
    settings = checked_settings(args, "gradio")
    if settings is None:
        return 2
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.data_dir / "gradio"))  # read when gradio is imported
    from ai_service.errors import ServiceError
    from ai_service.frontends.gradio_app import launch

    runtime = local_runtime(args)
    signal.signal(signal.SIGTERM, _interrupt)  # systemctl stop / docker stop: Gradio closes as on ^C, rows are written
    try:
        launch(runtime, args.host, args.port, args.model)
    except ServiceError as error:  # --model names no model
        print(f"ai-service gradio: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()  # the history rows still queued are written
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
