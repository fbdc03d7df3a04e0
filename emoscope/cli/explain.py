"""``emoscope explain``: which words drove each label, for one text, or the methods' faithfulness on a dataset sample."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emoscope.errors import InputError
from emoscope.fsutil import check_output_file, write_text_atomic


def _explain_params(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """The parameters the command line set, per method; the rest keep the methods' declared defaults."""
    from emoscope.explain import parse_param  # imports torch: loaded only when explaining

    lime = {"seed": args.seed, **({"samples": args.samples} if args.samples is not None else {})}
    ig = {k: v for k, v in (("n_steps", args.steps), ("internal_batch_size", args.internal_batch_size)) if v is not None}
    if args.precision:
        lime["precision"] = ig["precision"] = args.precision
    attention = {k: v for k, v in (("layer", args.layer), ("rollout", args.rollout or None),
                                   ("encoder", args.encoder)) if v is not None}
    if args.head is not None:  # a number or 'mean', checked against the attention head's spec
        attention["head"] = parse_param("attention", "head", args.head)
    params = {"lime": lime, "ig": ig, "attention": attention}
    if args.method == "layer-ig" or "layer-ig" in args.methods.split(","):  # only then: older outputs stay as they were
        params["layer-ig"] = {"n_steps": args.steps} if args.steps is not None else {}
    return params


def _evaluation_table(result: dict) -> str:
    """The Markdown table of ``explain --evaluate``: each method's faithfulness and its gain over random."""
    lines = ["| method | comprehensiveness ↑ | sufficiency ↓ | vs random: comprehensiveness gain [95% CI], wins "
             "| vs random: sufficiency gain [95% CI], wins | seconds per text | (text, label) pairs |",
             "|---|---|---|---|---|---|---|"]

    def versus(row: dict, measure: str) -> str:
        v = row.get(f"{measure}_vs_random")
        if not v or v["mean"] is None:
            return "—"
        return f"{v['mean']:+.3f} [{v['ci95_low']:+.3f}, {v['ci95_high']:+.3f}], {v['win_rate']:.0%}"

    for name, row in result.items():
        seconds = "—" if row.get("seconds") is None else f"{row['seconds']:.2f}"
        lines.append(f"| {name} | {row['comprehensiveness']:.4f} | {row['sufficiency']:.4f} | "
                     f"{versus(row, 'comprehensiveness')} | {versus(row, 'sufficiency')} | {seconds} | {row['pairs']} |")
    return "\n".join(lines)


def _explain_evaluate(args: argparse.Namespace, model, params: dict[str, dict[str, object]]) -> int:
    """``explain --evaluate``: faithfulness of the methods on a seeded sample of a labelled dataset."""
    import numpy as np

    from emoscope.data import load_dataset  # numpy and the readers: loaded only for the commands that read data
    from emoscope.explain import evaluate_methods  # imports torch: loaded only when explaining

    if not args.data:
        raise InputError("--evaluate needs --data (a labelled dataset spec or file, e.g. semeval2018:ar:dev)")
    if args.n < 1:
        raise InputError(f"--n must be at least 1 (texts to sample), got {args.n}")
    data = load_dataset(args.data, data_root=args.data_root)
    rng = np.random.default_rng(args.seed)
    picks = sorted(rng.choice(len(data), size=min(args.n, len(data)), replace=False).tolist())

    def save(done: int, result: dict) -> None:  # after each text too, so a long run stopped early keeps what it measured
        if args.output:
            write_text_atomic(args.output, json.dumps({"model": str(args.model), "data": data.name, "n": done,
                                                       **({"of": len(picks)} if done < len(picks) else {}),
                                                       "params": params, "results": result}, indent=1))

    result = evaluate_methods(model, [data.texts[i] for i in picks], args.methods.split(","), params, seed=args.seed,
                              log=(lambda _: None) if args.quiet else print, on_text=save)
    print(_evaluation_table(result))
    save(len(picks), result)
    return 0


def _summary_progress(quiet: bool):
    """A one-line progress bar on stderr for ``--summary`` (a line per tenth when not a terminal)."""
    import sys

    shown = [-1]

    def show(done: int, total: int) -> None:
        if quiet:
            return
        width = 30
        filled = width * done // total
        if sys.stderr.isatty():
            end = "\n" if done == total else ""
            print(f"\rexplaining [{'#' * filled}{'.' * (width - filled)}] {done}/{total} texts", end=end,
                  file=sys.stderr, flush=True)
        elif 10 * done // total > shown[0]:
            shown[0] = 10 * done // total
            print(f"explaining: {done}/{total} texts", file=sys.stderr, flush=True)
    return show


def _explain_summary(args: argparse.Namespace, model) -> int:
    """``explain --summary``: the words that raise and lower each label across a dataset (layer IG)."""
    from emoscope.explain.dataset import dataset_attributions, load_texts  # imports torch: only when explaining
    from emoscope.explain.word_summary import check_subset, summarize, summary_csv  # numpy: only for --summary

    if not args.data:
        raise InputError("--summary needs --data: 'validation' (the bundle's), a dataset spec or a CSV/TSV/JSONL file")
    if args.csv and not args.output:
        raise InputError("--csv writes beside --output FILE.json: give --output too")
    data = load_texts(args.data, model, args.data_root, args.text_column)
    check_subset(args.subset, data.gold is not None)
    params = {"n_steps": args.steps} if args.steps is not None else {}
    attributions = dataset_attributions(model, data.texts, params, _summary_progress(args.quiet), cache=not args.no_cache)
    summary = summarize(attributions, model.thresholds, data.gold, data.mask, args.label or None, args.language or None,
                        args.subset, args.top_k, args.min_count, args.examples)
    summary = {"model": str(args.model), "data": data.name, **summary}
    out = json.dumps(summary, ensure_ascii=False, indent=1)
    if not args.output:
        print(out)
        return 0
    write_text_atomic(args.output, out)
    print(f"written to {args.output}")
    if args.csv:
        csv_path = str(Path(args.output).with_suffix(".csv"))
        write_text_atomic(csv_path, summary_csv(summary))
        print(f"written to {csv_path}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from emoscope.explain import ExplainModel, explain, faithfulness, render_html  # imports torch: only when explaining
    from emoscope.predict import Predictor  # imports torch: loaded only for the commands that run a model

    if args.output:
        check_output_file(args.output)
    params = _explain_params(args)
    model = ExplainModel(Predictor(args.model))
    if args.evaluate:
        return _explain_evaluate(args, model, params)
    if args.summary:
        return _explain_summary(args, model)
    if args.text is None:
        raise InputError('give --text "..." to explain (or --evaluate / --summary --data SPEC)')
    exp = explain(model, args.text, args.method, args.label or None, params[args.method])
    if args.format == "html":
        body = "\n".join(render_html(exp, label) for label in exp.labels)
        out = f'<!doctype html><meta charset="utf-8"><title>EmoScope explanation</title>\n{body}\n'
    else:
        raw = exp.to_json()
        raw["faithfulness"] = faithfulness(model, exp)
        out = json.dumps(raw, ensure_ascii=False, indent=1)
    if args.output:
        write_text_atomic(args.output, out)
        print(f"written to {args.output}")
    else:
        print(out)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="which words drove each label: LIME, attention or Integrated Gradients")
    p.add_argument("--model", required=True, help="bundle directory (single-encoder or stacked)")
    p.add_argument("--text", help="the text to explain")
    p.add_argument("--method", choices=("lime", "attention", "ig", "layer-ig"), default="ig",
                   help="layer-ig: Integrated Gradients at the word vectors the model's head reads (the encoders run "
                        "once: fast; attributes to contextual word vectors, not input tokens)")
    p.add_argument("--label", action="append", help="label to explain (repeat for several; default: all)")
    p.add_argument("--format", choices=("json", "html"), default="json")
    p.add_argument("--output", help="write here instead of printing")
    p.add_argument("--samples", type=int, help="lime: perturbed samples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="lime and --evaluate: random seed")
    p.add_argument("--steps", type=int, help="ig and layer-ig: integration steps (default 50 and 16)")
    p.add_argument("--internal-batch-size", type=int, help="ig: steps per forward pass (default 16)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="lime and ig: 'auto' (default) runs the model in bf16 on AMX CPUs and bf16 GPUs "
                        "(about 2-3x faster), 'fp32' exactly as predictions run")
    p.add_argument("--layer", type=int, help="attention: layer (default -1, the last)")
    p.add_argument("--head", help="attention: head number or 'mean' (default)")
    p.add_argument("--rollout", action="store_true", help="attention: attention rollout over all layers")
    p.add_argument("--encoder", help="attention: 'fine-tuned' (default: averaged over the encoders fine-tuned on "
                                     "emotions), 'all', or one encoder's name from the bundle")
    p.add_argument("--evaluate", action="store_true", help="faithfulness of the methods on a dataset sample")
    p.add_argument("--data", help="--evaluate: labelled dataset spec or file; --summary: also 'validation' or an unlabelled file")
    p.add_argument("--data-root", help="folder holding the datasets")
    p.add_argument("--n", type=int, default=30, help="--evaluate: texts to sample")
    p.add_argument("--methods", default="lime,attention,ig", help="--evaluate: comma-separated methods")
    p.add_argument("--summary", action="store_true",
                   help="the words that most raise and lower each label across --data (layer IG of every text), "
                        "per language; cached per bundle, data and steps")
    p.add_argument("--csv", action="store_true", help="--summary: also write the word tables as CSV beside --output")
    p.add_argument("--subset", default="all", help="--summary: the texts per label: all, gold, predicted, correct, "
                                                   "errors, false-positives, false-negatives")
    p.add_argument("--language", action="append", help="--summary: a language to report (repeat; default: all and "
                                                       "each detected one)")
    p.add_argument("--top-k", type=int, default=20, help="--summary: words per list")
    p.add_argument("--min-count", type=int, default=3, help="--summary: occurrences a word needs to be listed")
    p.add_argument("--examples", type=int, default=3, help="--summary: example texts per word")
    p.add_argument("--text-column", default="text", help="--summary: the text column of an unlabelled file")
    p.add_argument("--no-cache", action="store_true", help="--summary: compute afresh, do not read or write the cache")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_explain)
