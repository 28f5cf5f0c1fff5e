"""`ai-service db upgrade|current|downgrade` and `history export`: the history database, without the web server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ai_service.cli.common import settings_from_args


def _db(args: argparse.Namespace) -> int:
    """Schema upgrades by hand (for deployments that set AI_SERVICE_DATABASE_MIGRATE=off and migrate first)."""
    from sqlalchemy.exc import SQLAlchemyError

    from ai_service.storage import migrate
    from ai_service.storage.database import connect, safe_url

    settings = settings_from_args(args)
    engine = connect(settings.database_url)
    try:
        if args.action == "upgrade":
            before = migrate.upgrade(engine, args.revision)
            after = migrate.current(engine)
            change = "already at" if before == after else f"{before or '(empty)'} ->"
            print(f"{safe_url(engine)}: {change} {after or '(empty)'}")
        elif args.action == "downgrade":
            migrate.downgrade(engine, args.revision)
            print(f"{safe_url(engine)}: now at {migrate.current(engine) or '(empty)'}")
        else:
            found, head = migrate.current(engine), migrate.head()
            print(f"{found or '(empty)'}{' (head)' if found == head else f' (head is {head})'}")
            return 0 if found == head or not args.check else 1
        return 0
    except SQLAlchemyError as error:
        print(f"{safe_url(engine)}: {str(error).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _history_export(args: argparse.Namespace) -> int:
    """The API's export, written to a file (through a temporary name, so a failure leaves no half file)."""
    from pydantic import ValidationError

    from ai_service.errors import ServiceError
    from ai_service.schemas import HistoryExportQuery
    from ai_service.service.history.export import export, write_export
    from ai_service.service.history.recorder import open_history

    fields = {"format": args.format, "since": args.since, "until": args.until, "model": args.model}
    fields |= {"version": args.version, "status": args.status, "source": args.source, "job_id": args.job_id}
    try:
        query = HistoryExportQuery.model_validate({key: value for key, value in fields.items() if value is not None})
    except ValidationError as error:
        problem = error.errors()[0]
        print(f"--{'.'.join(map(str, problem['loc'])).replace('_', '-')}: {problem['msg']}", file=sys.stderr)
        return 2
    history = open_history(settings_from_args(args))
    try:
        if args.output == "-":
            for data in export(history, query, query.format):
                sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return 0
        written = write_export(history, query, query.format, Path(args.output))
    except (ServiceError, OSError) as error:
        print(getattr(error, "message", None) or str(error), file=sys.stderr)
        return 1
    finally:
        if history is not None:
            history.close()
    print(f"{args.output}: {written:,} bytes ({query.format})")
    return 0


def add_storage_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="the history database's schema: upgrade, current, downgrade")
    actions = db.add_subparsers(dest="action", required=True)
    upgrade = actions.add_parser("upgrade", help="bring the schema up to date (safe to run from several hosts)")
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    current = actions.add_parser("current", help="the database's schema revision, and whether it is the newest")
    current.add_argument("--check", action="store_true", help="exit 1 when the schema is not at head")
    downgrade = actions.add_parser("downgrade", help="step the schema back (base: drop every table)")
    downgrade.add_argument("revision", help="revision to go back to, e.g. -1 or base")
    for sub in (upgrade, current, downgrade):
        sub.add_argument("--home", help="AI_SERVICE_HOME (default: the settings); AI_SERVICE_DATABASE_URL applies")
        sub.set_defaults(handler=_db)
    history = commands.add_parser("history", help="recorded predictions")
    history_actions = history.add_subparsers(dest="action", required=True)
    export = history_actions.add_parser("export", help="write the history as CSV, JSON lines or Parquet")
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    export.add_argument("--output", "-o", required=True, help="file to write (- for standard output)")
    export.add_argument("--since", help="oldest time included, ISO 8601 (UTC without an offset)")
    export.add_argument("--until", help="rows strictly before this time, ISO 8601")
    export.add_argument("--model", help="model name")
    export.add_argument("--version", help="model version")
    export.add_argument("--status", choices=("ok", "error"))
    export.add_argument("--source", choices=("api", "web", "job", "cli"))
    export.add_argument("--job-id", dest="job_id", help="rows of one bulk job")
    export.add_argument("--home", help="AI_SERVICE_HOME (default: the settings); AI_SERVICE_DATABASE_URL applies")
    export.set_defaults(handler=_history_export)
