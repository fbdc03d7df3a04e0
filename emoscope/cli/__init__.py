"""The ``emoscope`` command: train, evaluate, predict, explain, inspect data, manage encoder sources, write model cards.

One module per command (``train`` also holds ``ablate``, ``models`` also ``card``), each with its
``add_parser``. Errors caused by the user's input (``EmoScopeError``) print one line and exit with
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from emoscope.cli import data, evaluate, explain, models, predict, train, tune_fast
from emoscope.errors import EmoScopeError

COMMANDS = (train, evaluate, predict, tune_fast, explain, data, models)  # the order ``emoscope --help`` lists them in


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoscope", description="Multi-label emotion classification for Arabic and English.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "models" and args.action in ("install", "prepare") and not args.names:
        parser.error(f"models {args.action} needs at least one source name")
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return args.func(args)
    except EmoScopeError as exc:
        print(f"emoscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emoscope {args.command}: interrupted", file=sys.stderr)
        return 130
