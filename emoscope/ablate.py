"""``emoscope ablate``: one run that trains and scores every variant of a stacked recipe.

Stages 1 and 2 run once (or come from the work folder and the embedding cache); every variant
is then a meta-learner trained from the cached embeddings, so the whole table costs the
stage-1 fine-tuning plus a few minutes. Variants:

* each base encoder alone: its stage-1 fine-tuned classifier (for fine-tuned encoders) and the
  meta-learner on its embeddings only;
* the stack with BCE, weighted BCE, focal loss and the hybrid loss;
* the hybrid loss without each of its three terms (class weighting, label correlation,
  supervised contrastive);
* naive vs out-of-fold stacking (when the recipe has folds);
* tuned per-class thresholds vs 0.5 for every label.

Scores are on the recipe's ``eval`` set (the official dev split), with thresholds tuned on the
validation hold-out; ``--seeds N`` averages every trained variant over N meta-learner seeds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoscope.config import LossConfig, RunConfig
from emoscope.data import load_training_data
from emoscope.errors import ConfigError
from emoscope.metrics import compute_metrics
from emoscope.models import pick_device

Logger = Callable[[str], None]
SUMMARY_KEYS = ("macro_f1", "micro_f1", "jaccard", "hamming_loss")


def _hybrid(config: RunConfig) -> LossConfig:
    return config.loss if config.loss.name == "hybrid" else LossConfig(name="hybrid", max_weight=config.loss.max_weight)


def variants(config: RunConfig, folds: bool) -> list[dict[str, Any]]:
    """The trained variants of the ablation: name, encoders, loss and stacking mode."""
    names = [e.label for e in config.encoders]
    hybrid = _hybrid(config)
    out = []
    if len(names) > 1:
        out += [{"name": f"{n} alone → meta-learner (hybrid)", "encoders": [n], "loss": hybrid} for n in names]
    out += [
        {"name": "stack, BCE", "loss": LossConfig(name="bce")},
        {"name": "stack, weighted BCE", "loss": LossConfig(name="weighted_bce", max_weight=hybrid.max_weight)},
        {"name": "stack, focal", "loss": LossConfig(name="focal")},
        {"name": "stack, hybrid", "loss": hybrid, "main": True},
        {"name": "hybrid − class weighting", "loss": dataclasses.replace(hybrid, class_weighting=False)},
        {"name": "hybrid − label correlation", "loss": dataclasses.replace(hybrid, correlation_weight=0.0)},
        {"name": "hybrid − contrastive", "loss": dataclasses.replace(hybrid, contrastive_weight=0.0)},
    ]
    if config.meta.base_logits:
        out.append({"name": "hybrid − base-classifier logits", "loss": hybrid, "base": False})
    if folds:
        out.append({"name": "hybrid, naive stacking", "loss": hybrid, "naive": True})
    for v in out:
        v.setdefault("encoders", names)
    return out


def _mean_metrics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Average the summary metrics and per-class F1 over seeds (std as ``<key>_std``)."""
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key], out[f"{key}_std"] = float(values.mean()), float(values.std())
    labels = list(runs[0]["per_class"])
    out["per_class_f1"] = {lab: float(np.mean([r["per_class"][lab]["f1"] for r in runs])) for lab in labels}
    out["support"] = {lab: runs[0]["per_class"][lab]["support"] for lab in labels}
    return out


def run_ablation(config: RunConfig, *, seeds: int = 1, progress: bool = False, log: Logger = print,
                 work: Path | None = None, only: Sequence[str] = ()) -> dict[str, Any]:
    """Train and score every variant; returns a JSON-ready dict (see :func:`to_markdown`).

    ``only``: train just these meta-learner variants (by name) besides the main one (stack,
    hybrid); the stage-1 classifiers are always scored (they cost nothing here)."""
    from emoscope.stack import fit_meta, meta_probs, pick_thresholds, prepare_stack
    from emoscope.models.runtime import peak_gpu_mb, peak_rss_mb

    if config.kind != "stacked":
        raise ConfigError(f"{config.name} is a single-encoder recipe; ablations need a stacked recipe (a [stack] section)")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    chosen = variants(config, config.stack.folds > 1)
    if only:
        names = [v["name"] for v in chosen]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConfigError(f"--only: no variant named {', '.join(repr(n) for n in unknown)} in {config.name}; "
                              f"its variants are: {'; '.join(names)}")
        chosen = [v for v in chosen if v["name"] in only or v.get("main")]
    started = time.perf_counter()
    data = load_training_data(config)
    train_ds, val_ds = data.train, data.validation
    scored = data.eval if data.eval is not None else val_ds
    scored_split = "eval" if data.eval is not None else "validation"
    labels = train_ds.label_names
    t0 = time.perf_counter()
    stacked = prepare_stack(config, data, work=work, progress=progress, log=log)
    prepare_seconds = time.perf_counter() - t0
    device = pick_device(config.training.device)

    def score(probs: np.ndarray, thresholds: np.ndarray | float) -> dict[str, Any]:
        return compute_metrics(scored.labels, probs, thresholds, label_names=labels, label_mask=scored.label_mask)

    rows: list[dict[str, Any]] = []
    for name, single in stacked.single_scores.items():
        probs_val, probs_eval = single["validation"], single.get("eval")
        thresholds = pick_thresholds(config.thresholds, val_ds.labels, probs_val, val_ds.label_mask)
        if probs_eval is None:
            probs_eval = probs_val
        rows.append({"name": f"{name} alone, fine-tuned classifier (stage 1)", "seeds": 1, "group": "single",
                     **_mean_metrics([score(probs_eval, thresholds)]),
                     "validation_macro_f1": compute_metrics(val_ds.labels, probs_val, thresholds,
                                                            label_mask=val_ds.label_mask)["macro_f1"],
                     "seconds": single["info"].get("seconds")})
    main_probs: list[tuple[np.ndarray, np.ndarray]] = []
    meta_seconds = []
    for variant in chosen:
        runs, val_f1, seconds = [], [], []
        naive = variant.get("naive", False)
        train_emb = stacked.select(variant["encoders"], "train", naive=naive)
        val_emb = stacked.select(variant["encoders"], "validation")
        eval_emb = stacked.select(variant["encoders"], scored_split)
        use_base = variant.get("base", True)
        train_base = stacked.select_base(variant["encoders"], "train", naive=naive) if use_base else None
        val_base = stacked.select_base(variant["encoders"], "validation") if use_base else None
        eval_base = stacked.select_base(variant["encoders"], scored_split) if use_base else None
        sizes = [stacked.input_sizes[stacked.encoders.index(n)] for n in variant["encoders"]]
        for s in range(seeds):
            fit = fit_meta(config.meta, variant["loss"], config.thresholds, config.training.seed + s, train_emb,
                           train_ds, val_emb, val_ds, sizes, device=device, log=lambda m: log(f"  {variant['name']}: {m}"),
                           train_base=train_base, val_base=val_base)
            probs = meta_probs(fit.meta.to(device), eval_emb, 256, device, eval_base)
            runs.append(score(probs, fit.thresholds))
            val_f1.append(compute_metrics(val_ds.labels, fit.val_probs, fit.thresholds,
                                          label_mask=val_ds.label_mask)["macro_f1"])
            seconds.append(fit.seconds)
            meta_seconds.append(fit.seconds)
            if variant.get("main"):
                main_probs.append((probs, fit.thresholds))
        group = "single" if len(variant["encoders"]) == 1 and len(stacked.encoders) > 1 else "stack"
        rows.append({"name": variant["name"], "seeds": seeds, "group": group, "main": bool(variant.get("main")),
                     **_mean_metrics(runs), "validation_macro_f1": float(np.mean(val_f1)),
                     "seconds": float(np.mean(seconds))})
    rows.append({"name": "stack, hybrid, thresholds 0.5 (no tuning)", "seeds": seeds, "group": "stack",
                 **_mean_metrics([score(p, 0.5) for p, _ in main_probs]), "validation_macro_f1": None, "seconds": None})
    single_best = max((r for r in rows if r["group"] == "single"), key=lambda r: r["macro_f1"], default=None)
    main = next(r for r in rows if r.get("main"))
    return {
        "recipe": config.name,
        "description": config.description,
        "scored_on": scored.name,
        "n_scored": len(scored),
        "validation": val_ds.name,
        "labels": list(labels),
        "encoders": [dataclasses.asdict(e) for e in config.encoders],
        "folds": config.stack.folds,
        "seeds": seeds,
        "only": list(only),
        "rows": rows,
        "best_single": single_best["name"] if single_best else None,
        "stack_beats_best_single": bool(single_best and main["macro_f1"] > single_best["macro_f1"]),
        "cost": {"prepare_seconds": round(prepare_seconds, 1),
                 "stage_seconds": {k: round(v, 1) for k, v in stacked.stage_seconds.items()},
                 "meta_seconds_mean": round(float(np.mean(meta_seconds)), 1),
                 "meta_seconds_max": round(float(np.max(meta_seconds)), 1),
                 "total_seconds": round(time.perf_counter() - started, 1),
                 "peak_rss_mb": round(peak_rss_mb(), 1), **peak_gpu_mb(device), "device": str(device)},
    }


def _fmt(value: Any, std: Any = None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std else "")


def to_markdown(result: dict[str, Any], command: str = "") -> str:
    """The ablation as Markdown: a summary table and a per-class F1 table."""
    labels = result["labels"]
    lines = [f"### {result['recipe']}", ""]
    if result.get("description"):
        lines += [result["description"] + ".", ""]
    lines += [f"Scored on {result['scored_on']} ({result['n_scored']} texts); thresholds tuned on {result['validation']}; "
              f"{result['folds']} folds for out-of-fold stacking; meta-learner scores are the mean"
              f" ± std over {result['seeds']} seed(s).", ""]
    if result.get("only"):
        lines += [f"Partial run (`--only`): besides the stage-1 classifiers and the main variant, only "
                  f"{'; '.join(result['only'])}.", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["| variant | macro-F1 | micro-F1 | Jaccard | Hamming | val macro-F1 | train (s) |",
              "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        name = f"**{r['name']}**" if r.get("main") else r["name"]
        seconds = "—" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        lines.append(f"| {name} | {_fmt(r['macro_f1'], r.get('macro_f1_std'))} | {_fmt(r['micro_f1'])} | "
                     f"{_fmt(r['jaccard'])} | {_fmt(r['hamming_loss'])} | {_fmt(r.get('validation_macro_f1'))} | "
                     f"{seconds} |")
    support = result["rows"][0]["support"]
    lines += ["", "Per-class F1 (support in the header):", "",
              "| variant | " + " | ".join(f"{lab} ({support[lab]})" for lab in labels) + " |",
              "|---|" + "---|" * len(labels)]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(r["per_class_f1"][lab]) for lab in labels) + " |")
    cost = result["cost"]
    lines += ["", f"Best single encoder: {result['best_single']}; the stack with the hybrid loss "
              f"{'beats' if result['stack_beats_best_single'] else 'does not beat'} it on macro-F1. "
              f"Cost of this run: stages 1–2 {cost['prepare_seconds']:.0f} s (fine-tuning "
              f"{cost['stage_seconds'].get('finetune', 0):.0f} s, embedding {cost['stage_seconds'].get('embed', 0):.0f} s; "
              f"near 0 when reused from the work folder and cache), meta-learner {cost['meta_seconds_mean']:.0f} s per "
              f"variant on average (max {cost['meta_seconds_max']:.0f} s), total {cost['total_seconds']:.0f} s, "
              f"peak RSS {cost['peak_rss_mb']:.0f} MiB"
              + (f", peak GPU memory {cost['peak_gpu_mb']:.0f} MiB on {cost['device']}" if "peak_gpu_mb" in cost else "")
              + ".", ""]
    return "\n".join(lines)


def write_into(path: Path, name: str, markdown: str) -> None:
    """Replace (or append) the block between ``<!-- ablation:NAME:start -->`` and ``...:end -->`` in ``path``."""
    start, end = f"<!-- ablation:{name}:start -->", f"<!-- ablation:{name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{start}\n{markdown}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def save_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
