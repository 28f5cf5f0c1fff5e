"""`ai-service` command line: maintenance tasks that run in-process, without the web server.

`models list|load|unload` build the server's runtime from the same settings (AI_SERVICE_* env, AI_SERVICE_CONFIG,
or --home) and call the service layer, as the API does; with --url they talk to a running server's endpoints instead.
`predict FILE...` runs a model in-process (recorded in the history with source cli).
`db upgrade|current|downgrade` manage the schema of the settings' database; `history export` writes the same file
GET /api/v1/history/export answers with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ai_service.models.builtin.digits import WEIGHTS_PATH

if TYPE_CHECKING:
    from ai_service.service.runtime import Runtime


def _train_digits(args: argparse.Namespace) -> int:
    from ai_service.models.builtin.digits_training import train_digits

    report = train_digits(Path(args.output), epochs=args.epochs, copies=args.copies, seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0


def _local_runtime(args: argparse.Namespace) -> Runtime:
    """What the server would build, in this process (nothing loaded yet), which it configures like a worker."""
    from ai_service.observability.logging import setup_logging
    from ai_service.server.process import configure_process
    from ai_service.service.runtime import build_runtime
    from ai_service.settings import load_settings

    settings = load_settings({"home": args.home, "log_to_file": False} if args.home else {"log_to_file": False})
    setup_logging(settings)
    configure_process(settings)
    return build_runtime(settings)


def _remote(args: argparse.Namespace, method: str, path: str) -> Any:
    """Call a running server; the admin token comes from --token or AI_SERVICE_ADMIN_TOKEN."""
    token = args.token or os.environ.get("AI_SERVICE_ADMIN_TOKEN", "")
    request = urllib.request.Request(
        args.url.rstrip("/") + path,
        method=method,
        data=b"" if method == "POST" else None,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as failure:
        try:
            body = json.loads(failure.read() or b"{}").get("error", {})
        except ValueError:  # not our JSON envelope (a proxy's error page)
            body = {}
        raise SystemExit(f"{failure.code} {body.get('code', '')}: {body.get('message', failure.reason)}") from None
    except urllib.error.URLError as failure:
        raise SystemExit(f"cannot reach {args.url}: {failure.reason}") from None


def _print_table(statuses: list[dict[str, Any]]) -> None:
    rows = [("MODEL", "TASK", "STATE", "PARAMS", "MiB ON DEVICE", "SOURCE")]
    for s in statuses:
        default = "*" if s.get("default") else ""
        rows.append(
            (
                f"{s['name']}@{s['version']}{default}",
                s["task"],
                s["state"],
                f"{s.get('parameters', 0):,}",
                f"{s.get('bytes_on_device', 0) / 2**20:.1f}",
                s.get("source", ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for s in statuses:
        if s.get("error"):
            print(f"\n{s['name']}: {s['error']}")


def _models_list(args: argparse.Namespace) -> int:
    if args.url:
        statuses = _remote(args, "GET", "/api/v1/models")["models"]
    else:
        from ai_service.service.describe import list_models

        runtime = _local_runtime(args)
        statuses = list_models(runtime)
        runtime.close()
    if args.json:
        print(json.dumps(statuses, indent=2, default=str))
    else:
        _print_table(statuses)
    return 1 if any(s["state"] == "failed" for s in statuses) else 0


def _models_action(args: argparse.Namespace) -> int:
    """Remote: load/unload on the server. Local: load (proves the files load) or load-then-unload."""
    if args.url:
        for name in args.names:
            reply = _remote(args, "POST", f"/api/v1/models/{name}/{args.action}")
            model = reply["model"]
            print(
                f"{model['key']}: {model['state']} in {reply['seconds']:.3f}s "
                f"({model['bytes_on_device'] / 2**20:.1f} MiB on device)"
            )
        return 0
    from ai_service.devices import memory_allocated
    from ai_service.errors import ServiceError
    from ai_service.service.lifecycle import manage

    runtime = _local_runtime(args)
    device, status = runtime.device, 0
    for name in args.names:
        try:
            baseline = memory_allocated(device)
            model = manage(runtime, name, "load")["model"]
            print(
                f"{model['key']}: loaded on {device} in {model['load_seconds']:.3f}s, "
                f"{model['parameters']:,} parameters, {model['bytes_on_device'] / 2**20:.1f} MiB"
            )
            if args.action == "unload":
                manage(runtime, model["key"], "unload")
                print(
                    f"{model['key']}: unloaded; device memory back to baseline: {memory_allocated(device) == baseline}"
                )
        except ServiceError as error:
            print(f"{name}: {error.message}", file=sys.stderr)
            status = 1
    runtime.close()
    return status


def _export_example(args: argparse.Namespace) -> int:
    from ai_service.models.examples import ExampleExists, write_example
    from ai_service.settings import load_settings

    home = Path(args.home).expanduser().resolve() if args.home else load_settings().home
    try:
        report = write_example(home, force=args.force)
    except ExampleExists as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    first = report["models"][0].split("@")[0]
    print(
        f"\nNext: AI_SERVICE_HOME={home} make run   (or python app.py), then\n"
        f"  curl -F file=@{report['sample_image']} -F model={first} http://127.0.0.1:8000/api/v1/predict\n"
        f"  ai-service models list --home {home}"
    )
    return 0


def _add_models_commands(commands: Any) -> None:
    models = commands.add_parser("models", help="list, load or unload models (in-process, or on a server with --url)")
    actions = models.add_subparsers(dest="action", required=True)
    for action, text in (
        ("list", "every registered model and its state"),
        ("load", "load models (locally: proves the files load; --url: on the server)"),
        ("unload", "unload models (locally: load then unload and check the memory came back)"),
    ):
        sub = actions.add_parser(action, help=text)
        if action != "list":
            sub.add_argument("names", nargs="+", help="name or name@version")
        else:
            sub.add_argument("--json", action="store_true", help="full statuses as JSON")
        sub.add_argument("--home", help="AI_SERVICE_HOME to read models from (default: the settings)")
        sub.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
        sub.add_argument("--token", help="admin token for --url (default: $AI_SERVICE_ADMIN_TOKEN)")
        sub.add_argument("--timeout", type=float, default=120.0)
        sub.set_defaults(handler=_models_list if action == "list" else _models_action)
    example = commands.add_parser(
        "export-example",
        help="write example TorchScript/export/safetensors models and a models file under AI_SERVICE_HOME",
    )
    example.add_argument("--home", help="AI_SERVICE_HOME to write into (default: the settings)")
    example.add_argument(
        "--force", action="store_true", help="export again, replacing models/examples/ and models.yaml"
    )
    example.set_defaults(handler=_export_example)


def _settings(args: argparse.Namespace) -> Any:
    """The settings the server would read (env, config file), with --home when given; logging set up from them."""
    from ai_service.observability.logging import setup_logging
    from ai_service.settings import load_settings

    settings = load_settings({"home": args.home, "log_to_file": False} if args.home else {"log_to_file": False})
    setup_logging(settings)
    return settings


def _db(args: argparse.Namespace) -> int:
    """Schema upgrades by hand (for deployments that set AI_SERVICE_DATABASE_MIGRATE=off and migrate first)."""
    from sqlalchemy.exc import SQLAlchemyError

    from ai_service.storage import migrate
    from ai_service.storage.database import connect, safe_url

    settings = _settings(args)
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
    history = open_history(_settings(args))
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


def _predict(args: argparse.Namespace) -> int:
    """Run a model on image files in-process, through the service layer, recorded in the history as source cli."""
    import getpass

    from ai_service.errors import ServiceError
    from ai_service.observability.logging import new_request_id
    from ai_service.schemas import PredictOptions
    from ai_service.service.outputs import serialize
    from ai_service.service.predict import predict
    from ai_service.service.upload import Caller, Upload

    options = PredictOptions.model_validate({"model": args.model, "top_k": args.top_k})
    try:
        uploads = [Upload(Path(name).read_bytes(), Path(name).name) for name in args.files]
    except OSError as error:
        print(error, file=sys.stderr)
        return 2
    runtime = _local_runtime(args)
    try:
        model_options = options.model_options(runtime.settings.models.default_top_k)
        caller = Caller("cli", new_request_id(), f"cli:{getpass.getuser()}")
        outcome = predict(runtime, options.model, uploads, model_options, caller)
    except ServiceError as error:
        print(json.dumps(error.body()), file=sys.stderr)
        return 1
    finally:
        runtime.close()  # stops the model threads and writes the history rows before the process ends
    outcome.results = [serialize(result, options) for result in outcome.results]
    print(json.dumps(outcome.as_dict(), indent=2))
    return 0 if all("error" not in result for result in outcome.results) else 1


def _add_storage_commands(commands: Any) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ai-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train-digits", help="reproduce the committed digits weights deterministically")
    train.add_argument("--output", default=str(WEIGHTS_PATH), help="where to write the state_dict (.pt)")
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--copies", type=int, default=4, help="augmented re-renders per training digit")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_train_digits)
    _add_models_commands(commands)
    predict = commands.add_parser("predict", help="run a model on image files in this process (recorded as cli)")
    predict.add_argument("files", nargs="+", help="image files")
    predict.add_argument("--model", help="model name or name@version (default: the default model)")
    predict.add_argument("--top-k", dest="top_k", type=int, help="predictions per image (classification)")
    predict.add_argument("--home", help="AI_SERVICE_HOME (default: the settings)")
    predict.set_defaults(handler=_predict)
    _add_storage_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
