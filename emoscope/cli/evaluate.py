"""``emoscope evaluate``: every metric of a bundle on a labelled dataset."""

from __future__ import annotations

import argparse
import json

from emoscope.cli.common import reader_options
from emoscope.data import align_labels, load_dataset
from emoscope.fsutil import check_output_file, write_text_atomic
from emoscope.metrics import compute_metrics, format_report


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from emoscope.predict import Predictor  # torch loads only for the commands that run a model

    if args.output:
        check_output_file(args.output)
    predictor = Predictor(args.model, fast=args.fast)
    data = align_labels(load_dataset(args.data, data_root=args.data_root, **reader_options(args)), predictor.labels)
    probs = predictor.predict_proba(data.texts)
    thresholds = 0.5 if args.threshold_05 else predictor.thresholds
    metrics = compute_metrics(data.labels, probs, thresholds, label_names=predictor.labels)
    metrics = {"model": str(args.model), "data": data.name, **({"path": "fast"} if args.fast else {}), **metrics}
    print(f"{predictor.name} on {data.name} ({len(data)} texts{', fast CPU path' if args.fast else ''})")
    print(format_report(metrics))
    if args.output:
        write_text_atomic(args.output, json.dumps(metrics, indent=1, ensure_ascii=False))
        print(f"metrics written to {args.output}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="all metrics of a bundle on a labelled dataset")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--data", required=True, help="dataset spec (brighter:eng:dev, semeval2018:ar:dev, ...) or a file")
    p.add_argument("--data-root", help="folder holding the datasets (default: EMOSCOPE_DATA_ROOT or ../shared/datasets)")
    p.add_argument("--text-column", help="text column of a generic CSV/TSV file (default: text)")
    p.add_argument("--output", help="also write the metrics as JSON here")
    p.add_argument("--fast", action="store_true",
                   help="score on the fast CPU path (ONNX Runtime) with its own thresholds (see emoscope tune-fast)")
    p.add_argument("--threshold-05", action="store_true", help="use 0.5 for every label instead of the bundle's thresholds")
    p.set_defaults(func=_cmd_evaluate)
