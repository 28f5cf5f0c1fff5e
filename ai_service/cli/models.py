"""`ai-service train-digits*`, `models list|load|unload`, `export-example`: in-process, or on a server (--url)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ai_service.cli.common import local_runtime


def _train_digits(args: argparse.Namespace) -> int:
    from ai_service.models.builtin.digits import WEIGHTS_PATH
    from ai_service.models.builtin.digits_training import train_digits

    report = train_digits(Path(args.output or WEIGHTS_PATH), epochs=args.epochs, copies=args.copies, seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0


def _train_scenes(args: argparse.Namespace) -> int:
    from ai_service.models.builtin import digits_detect, digits_segment, scene_training

    module, train = {
        "detect": (digits_detect, scene_training.train_digits_detect),
        "segment": (digits_segment, scene_training.train_digits_segment),
    }[args.network]
    output = Path(args.output or module.WEIGHTS_PATH)
    report = train(output, rounds=args.rounds, scenes_per_round=args.scenes, passes=args.passes, seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0


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
                f"{s['key']}{default}",  # name@version, or the name alone of a registration that failed
                s["task"] or "-",
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

        runtime = local_runtime(args)
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

    runtime = local_runtime(args)
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


def add_models_commands(commands: Any) -> None:
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


def add_train_command(commands: Any) -> None:
    """`train-digits`, `train-digits-detect`, `train-digits-segment`: the committed weights come from these."""
    train = commands.add_parser("train-digits", help="reproduce the committed digits weights deterministically")
    train.add_argument("--output", help="where to write the state_dict (.pt) (default: the committed weights)")
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--copies", type=int, default=4, help="augmented re-renders per training digit")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_train_digits)
    for name, what in (("detect", "digits-detect"), ("segment", "digits-segment")):
        scene = commands.add_parser(
            f"train-digits-{name}",
            help=f"reproduce the committed {what} weights deterministically (needs scikit-image)",
        )
        scene.add_argument("--output", help="where to write the weights (.pt) (default: the committed weights)")
        rounds = {"detect": 12, "segment": 15}[name]
        scene.add_argument("--rounds", type=int, default=rounds, help="rounds of freshly composed training scenes")
        scene.add_argument("--scenes", type=int, default=512, help="scenes composed per round")
        scene.add_argument("--passes", type=int, default=3, help="training passes over each round's scenes")
        scene.add_argument("--seed", type=int, default=0)
        scene.set_defaults(handler=_train_scenes, network=name)
