"""`ai-service` command line: the server (`serve`), maintenance tasks and bulk prediction.

`serve` runs gunicorn with the configuration shipped in the package (what `make run` runs).
`models list|load|unload` build the server's runtime from the same settings (AI_SERVICE_* env, AI_SERVICE_CONFIG,
or --home) and call the service layer, as the API does; with --url they talk to a running server's endpoints instead.
`predict PATH...` runs a model over files and folders (a local worker pool, recorded in the history with source cli,
or a running server with --server) and writes one record per input. `worker` runs bulk-job chunks from a broker.
`db upgrade|current|downgrade` manage the schema of the settings' database; `history export` writes the same file
GET /api/v1/history/export answers with. `dashboard --streamlit` and `gradio` start the front-ends of the optional
extras (ai_service/frontends).
"""

from __future__ import annotations

import argparse
import sys

from ai_service import __version__
from ai_service.cli.frontends import add_frontend_commands
from ai_service.cli.models import add_models_commands, add_train_command
from ai_service.cli.predict import add_predict_command
from ai_service.cli.serve import add_serve_command
from ai_service.cli.storage import add_storage_commands
from ai_service.cli.worker import add_worker_command, worker_command


def build_parser() -> argparse.ArgumentParser:
    """Every command, each module adding its own."""
    parser = argparse.ArgumentParser(
        prog="ai-service", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands)
    add_train_command(commands)
    add_models_commands(commands)
    add_predict_command(commands)
    add_worker_command(commands)
    add_storage_commands(commands)
    add_frontend_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; `worker`'s arguments go to the worker's own parser untouched."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["worker"]:
        return worker_command(argv[1:])
    args = build_parser().parse_args(argv)
    return args.handler(args)
