"""`ai-service worker [...]`: a Celery worker for bulk jobs; its options belong to ai_service.worker.main."""

from __future__ import annotations

from typing import Any


def add_worker_command(commands: Any) -> None:
    """Listed in `ai-service --help`; `main` hands everything after `worker` to run_worker unparsed."""
    commands.add_parser(
        "worker",
        help="run bulk-job chunks from the broker (AI_SERVICE_BROKER_URL); see `ai-service worker --help`",
        add_help=False,
    ).set_defaults(handler=lambda args: worker_command([]))


def worker_command(argv: list[str]) -> int:
    """Start the worker (imported here: Celery and the models load only for this command)."""
    from ai_service.extras import missing_extra

    try:
        from ai_service.worker.main import run_worker
    except ModuleNotFoundError as error:
        raise missing_extra(error, "ai-service worker") from error

    return int(run_worker(argv) or 0)
