"""`ai-service` command line: maintenance tasks that run in-process, without the web server."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ai_service.models.builtin.digits import WEIGHTS_PATH


def _train_digits(args: argparse.Namespace) -> int:
    from ai_service.models.builtin.digits_training import train_digits

    report = train_digits(Path(args.output), epochs=args.epochs, copies=args.copies, seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ai-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train-digits", help="reproduce the committed digits weights deterministically")
    train.add_argument("--output", default=str(WEIGHTS_PATH), help="where to write the state_dict (.pt)")
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--copies", type=int, default=4, help="augmented re-renders per training digit")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_train_digits)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
