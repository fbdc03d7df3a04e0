"""``emoscope predict``: one text, or a CSV/TSV/JSONL file in bounded memory."""

from __future__ import annotations

import argparse
import json

from emoscope.errors import InputError
from emoscope.rowfiles import check_job


def _cmd_predict(args: argparse.Namespace) -> int:
    from emoscope.predict import Predictor  # torch loads only for the commands that run a model

    if (args.text is None) == (args.input is None):
        raise InputError("give either --text \"...\" or --input FILE (with --output FILE)")
    if args.input is not None and not args.output:
        raise InputError("--input needs --output FILE (.csv, .tsv or .jsonl)")
    if args.input is not None:
        check_job(args.input, args.output, args.chunk_size)  # before the model loads
    from emoscope.distributed import current_world  # torch: only once the command runs a model

    world = current_world()  # several processes under accelerate launch: each scores a share of --input
    predictor = Predictor(args.model, device=str(world.device()), fast=args.fast)
    if args.text is not None:
        [result] = predictor.predict([args.text])
        if args.json:
            print(json.dumps({"labels": result.labels, "probabilities": result.probabilities,
                              "language": result.language, "truncated": result.truncated}, ensure_ascii=False))
            return 0
        print(f"labels: {', '.join(result.labels) or '(none)'}")
        for label, prob in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
            threshold = predictor.thresholds[predictor.labels.index(label)]
            mark = "*" if label in result.labels else " "
            print(f"  {mark} {label:<14} {prob:.3f}  (threshold {threshold:.2f})")
        return 0
    if world.distributed:
        from emoscope.sharded import predict_file_sharded  # (imports predict: torch, as above)

        stats = predict_file_sharded(predictor, args.input, args.output, world, text_column=args.text_column,
                                     chunk_size=args.chunk_size, progress=not args.quiet)
        if not world.is_main:
            return 0
    else:
        stats = predictor.predict_file(args.input, args.output, text_column=args.text_column,
                                       chunk_size=args.chunk_size, progress=not args.quiet)
    print(f"{stats['predicted']} of {stats['rows']} rows predicted into {args.output}"
          + (f"; {stats['empty']} rows with empty text left blank" if stats["empty"] else ""))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict one text or a CSV/TSV/JSONL file")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--text", help="one text to classify")
    p.add_argument("--input", help="CSV, TSV or JSONL file to classify")
    p.add_argument("--output", help="where to write the file with prob_<label> and <label> columns")
    p.add_argument("--text-column", default="text", help="column (or JSON field) holding the text (default: text)")
    p.add_argument("--chunk-size", type=int, default=512, help="rows per chunk; memory stays bounded by it")
    p.add_argument("--json", action="store_true", help="print the --text result as JSON")
    p.add_argument("--fast", action="store_true", help="score on the fast CPU path (ONNX Runtime) with the "
                   "thresholds tuned for it (emoscope tune-fast adds them to a bundle)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)
