"""``emoscope tune-fast``: add the fast CPU path's thresholds to a bundle (``emoscope.fast_path``)."""

from __future__ import annotations

import argparse


def _cmd_tune_fast(args: argparse.Namespace) -> int:
    from emoscope.fast_path import tune_fast  # torch loads only for the commands that run a model

    record = tune_fast(args.model)
    print(f"fast path thresholds tuned on {record.n_texts} validation texts and recorded in {args.model}/manifest.json")
    print(f"  validation macro-F1 {record.macro_f1:.4f} (default path at the bundle's thresholds: "
          f"{record.reference_macro_f1:.4f})")
    print(f"  probabilities differ from the default path's by at most {record.max_abs_diff:.2e} "
          f"(mean {record.mean_abs_diff:.2e})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("tune-fast", help="tune and record the fast CPU path's thresholds on a bundle's validation texts")
    p.add_argument("--model", required=True, help="bundle directory (its manifest.json is updated)")
    p.set_defaults(func=_cmd_tune_fast)
