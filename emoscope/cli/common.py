"""What several commands share: dataset reader options and spec lists."""

from __future__ import annotations

import argparse


def one_or_many(specs: list[str]) -> str | tuple[str, ...]:
    return specs[0] if len(specs) == 1 else tuple(specs)


def reader_options(args: argparse.Namespace) -> dict[str, str]:
    """Reader options the user set (known formats refuse options they do not take)."""
    return {"text_column": args.text_column} if args.text_column else {}
