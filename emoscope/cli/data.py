"""``emoscope data``: a dataset spec or file summarised (sizes, labels, dropped rows)."""

from __future__ import annotations

import argparse

from emoscope.cli.common import reader_options
from emoscope.data import load_dataset


def _cmd_data(args: argparse.Namespace) -> int:
    ds = load_dataset(args.spec, data_root=args.data_root, **reader_options(args))
    freq = ds.labels.mean(0)
    print(f"{ds.name}: {len(ds)} texts, language {ds.language}, {len(ds.label_names)} labels")
    print(f"  no-emotion texts: {int((ds.labels.sum(1) == 0).sum())}; mean labels per text {ds.labels.sum(1).mean():.2f}")
    for name, count, f in zip(ds.label_names, ds.labels.sum(0), freq):
        print(f"  {name:<14} {int(count):>6}  {f:6.1%}")
    if ds.dropped:
        print(f"  dropped rows: {len(ds.dropped)} (first: line {ds.dropped[0][0]}: {ds.dropped[0][1]})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="summarise a dataset spec or file")
    p.add_argument("spec", help="dataset spec or file")
    p.add_argument("--data-root", help="folder holding the datasets")
    p.add_argument("--text-column", help="text column of a generic CSV/TSV file (default: text)")
    p.set_defaults(func=_cmd_data)
