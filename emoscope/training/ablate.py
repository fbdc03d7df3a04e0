"""``emoscope ablate``: one run that trains and scores every variant of a stacked recipe.

Stages 1 and 2 run once (or come from the work folder and the embedding cache); every variant
is then a meta-learner trained from the cached embeddings, so the whole table costs the
stage-1 fine-tuning plus a few minutes. Variants:

* each base encoder alone: its stage-1 fine-tuned classifier (for fine-tuned encoders) and the
  meta-learner on its embeddings only;
* the stack with BCE, weighted BCE, focal loss and the hybrid loss;
* the hybrid loss without each of its three terms (class weighting, label correlation,
  supervised contrastive);
* the stack without each of its encoders (where that is not one encoder alone) and without each
  text base (``[[bases]]``);
* naive vs out-of-fold stacking (when the recipe has folds);
* tuned per-class thresholds vs 0.5 for every label.

Scores are on the recipe's ``eval`` set (the official dev split), with thresholds tuned on the
validation hold-out; ``--seeds N`` averages every trained variant over N meta-learner seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoscope.config import LossConfig, RunConfig
from emoscope.data import Dataset, TrainingData
from emoscope.errors import ConfigError
from emoscope.metrics import compute_metrics
from emoscope.models import pick_device
from emoscope.models.runtime import peak_gpu_mb, peak_rss_mb
from emoscope.thresholds import choose_thresholds
from emoscope.training.run import Logger, load_run_data
from emoscope.training.stack.stage2 import StackInputs, prepare_stack
from emoscope.training.stack.stage3 import MetaSelection, fit_meta, meta_probs

SUMMARY_KEYS = ("macro_f1", "micro_f1", "jaccard", "hamming_loss")


def _hybrid(config: RunConfig) -> LossConfig:
    return config.loss if config.loss.name == "hybrid" else LossConfig(name="hybrid", max_weight=config.loss.max_weight)


def variants(config: RunConfig, folds: bool) -> list[dict[str, Any]]:
    """The trained variants of the ablation: name, encoders, loss and stacking mode."""
    names = [e.label for e in config.encoders]
    hybrid = _hybrid(config)
    out = []
    if len(names) > 1 or config.bases:  # an encoder alone reads no text base either
        out += [{"name": f"{n} alone → meta-learner (hybrid)", "encoders": [n], "loss": hybrid, "text_bases": []}
                for n in names]
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
    out += [{"name": f"hybrid − {b.label} base", "loss": hybrid, "text_bases": [c.label for c in config.bases if c != b]}
            for b in config.bases]
    # the stack without each encoder, where that is not already an "alone" row above
    out += [{"name": f"hybrid − {n}", "loss": hybrid, "encoders": [m for m in names if m != n]}
            for n in names if len(names) > 2 or (len(names) == 2 and config.bases)]
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


def chosen_variants(config: RunConfig, seeds: int, only: Sequence[str]) -> list[dict[str, Any]]:
    """The variants to train: all of them, or ``only`` those named besides the main one."""
    if config.kind != "stacked":
        raise ConfigError(f"{config.name} is a single-encoder recipe; ablations need a stacked recipe (a [stack] section)")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    chosen = variants(config, config.stack.folds > 1)
    if not only:
        return chosen
    names = [v["name"] for v in chosen]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ConfigError(f"--only: no variant named {', '.join(repr(n) for n in unknown)} in {config.name}; "
                          f"its variants are: {'; '.join(names)}")
    return [v for v in chosen if v["name"] in only or v.get("main")]


@dataclass
class Scoring:
    """Where the ablation scores its variants: the eval split (the validation split when the
    recipe has none), with thresholds chosen on validation."""

    data: TrainingData

    @property
    def scored(self) -> Dataset:
        return self.data.eval if self.data.eval is not None else self.data.validation

    @property
    def split(self) -> str:
        return "eval" if self.data.eval is not None else "validation"

    def score(self, probs: np.ndarray, thresholds: np.ndarray | float) -> dict[str, Any]:
        scored = self.scored
        return compute_metrics(scored.labels, probs, thresholds, label_names=self.data.train.label_names,
                               label_mask=scored.label_mask)

    def validation_f1(self, probs: np.ndarray, thresholds: np.ndarray) -> float:
        val = self.data.validation
        return compute_metrics(val.labels, probs, thresholds, label_mask=val.label_mask)["macro_f1"]


def stage1_rows(config: RunConfig, stacked: StackInputs, scoring: Scoring) -> list[dict[str, Any]]:
    """One row per fine-tuned encoder: its own stage-1 classifier (costs nothing here)."""
    val = scoring.data.validation
    rows = []
    for name, single in stacked.single_scores.items():
        probs_val, probs_eval = single["validation"], single.get("eval")
        thresholds = choose_thresholds(config.thresholds, val.labels, probs_val, val.label_mask)
        if probs_eval is None:
            probs_eval = probs_val
        rows.append({"name": f"{name} alone, fine-tuned classifier (stage 1)", "seeds": 1, "group": "single",
                     **_mean_metrics([scoring.score(probs_eval, thresholds)]),
                     "validation_macro_f1": scoring.validation_f1(probs_val, thresholds),
                     "seconds": single["info"].get("seconds")})
    return rows


def _prefixed(log: Logger, prefix: str, message: str) -> None:
    log(f"  {prefix}: {message}")


def variant_config(config: RunConfig, loss: LossConfig, seed: int) -> RunConfig:
    """The recipe as one variant's meta-learner trains it: the variant's loss, seed ``seed``."""
    return config.replace(loss=loss, training=dataclasses.replace(config.training, seed=seed))


@dataclass
class VariantRuns:
    """One variant's meta-learners, one per seed: scores, and the scored split's probabilities."""

    scores: list[dict[str, Any]]
    validation_f1: list[float]
    seconds: list[float]
    probs: list[tuple[np.ndarray, np.ndarray]]  # (probabilities of the scored split, thresholds)


def run_variant(config: RunConfig, variant: dict[str, Any], stacked: StackInputs, scoring: Scoring, seeds: int,
                device: torch.device, log: Logger) -> VariantRuns:
    """Train ``variant``'s meta-learner once per seed and score each."""
    names, use_base = variant["encoders"], variant.get("base", True)
    text_bases = variant.get("text_bases")  # None: every [[bases]] entry
    selection = MetaSelection.of(stacked, names, scoring.data, naive=variant.get("naive", False), base=use_base,
                                 text_bases=text_bases)
    scored_rows = stacked.select(names, scoring.split)
    scored_base = stacked.select_base(names, scoring.split, text_bases=text_bases) if use_base else None
    runs = VariantRuns([], [], [], [])
    for s in range(seeds):
        fit = fit_meta(variant_config(config, variant["loss"], config.training.seed + s), selection, device=device,
                       log=functools.partial(_prefixed, log, variant["name"]))
        probs = meta_probs(fit.meta.to(device), scored_rows, device, scored_base)
        runs.scores.append(scoring.score(probs, fit.thresholds))
        runs.validation_f1.append(scoring.validation_f1(fit.val_probs, fit.thresholds))
        runs.seconds.append(fit.seconds)
        runs.probs.append((probs, fit.thresholds))
    return runs


def variant_row(variant: dict[str, Any], runs: VariantRuns, stacked: StackInputs) -> dict[str, Any]:
    bases = variant.get("text_bases")  # None: every text base
    bases = list(stacked.text_bases) if bases is None else bases
    # one base alone: one encoder reading no text base (one encoder + the TF-IDF base is a stack)
    single = len(variant["encoders"]) == 1 and not bases and (len(stacked.encoders) > 1 or bool(stacked.text_bases))
    group = "single" if single else "stack"
    return {"name": variant["name"], "seeds": len(runs.scores), "group": group, "main": bool(variant.get("main")),
            **_mean_metrics(runs.scores), "validation_macro_f1": float(np.mean(runs.validation_f1)),
            "seconds": float(np.mean(runs.seconds))}


def summary(config: RunConfig, scoring: Scoring, rows: list[dict[str, Any]], seeds: int, only: Sequence[str],
            cost: dict[str, Any]) -> dict[str, Any]:
    """The ablation's JSON-ready result around its rows."""
    single_best = max((r for r in rows if r["group"] == "single"), key=lambda r: r["macro_f1"], default=None)
    main = next(r for r in rows if r.get("main"))
    return {
        "recipe": config.name,
        "description": config.description,
        "scored_on": scoring.scored.name,
        "n_scored": len(scoring.scored),
        "validation": scoring.data.validation.name,
        "labels": list(scoring.data.train.label_names),
        "encoders": [dataclasses.asdict(e) for e in config.encoders],
        "folds": config.stack.folds,
        "seeds": seeds,
        "only": list(only),
        "rows": rows,
        "best_single": single_best["name"] if single_best else None,
        "stack_beats_best_single": bool(single_best and main["macro_f1"] > single_best["macro_f1"]),
        "cost": cost,
    }


def run_ablation(config: RunConfig, *, seeds: int = 1, progress: bool = False, log: Logger = print,
                 work: Path | None = None, only: Sequence[str] = ()) -> dict[str, Any]:
    """Train and score every variant; returns a JSON-ready dict (see :func:`to_markdown`).

    ``only``: train just these meta-learner variants (by name) besides the main one (stack,
    hybrid); the stage-1 classifiers are always scored (they cost nothing here)."""
    chosen = chosen_variants(config, seeds, only)
    started = time.perf_counter()
    device = pick_device(config.training.device)
    scoring = Scoring(load_run_data(config))
    t0 = time.perf_counter()
    stacked = prepare_stack(config, scoring.data, device=device, work=work, progress=progress, log=log)
    prepare_seconds = time.perf_counter() - t0
    rows = stage1_rows(config, stacked, scoring)
    main_probs: list[tuple[np.ndarray, np.ndarray]] = []
    meta_seconds: list[float] = []
    for variant in chosen:
        runs = run_variant(config, variant, stacked, scoring, seeds, device, log)
        rows.append(variant_row(variant, runs, stacked))
        meta_seconds += runs.seconds
        if variant.get("main"):
            main_probs += runs.probs
    rows.append({"name": "stack, hybrid, thresholds 0.5 (no tuning)", "seeds": seeds, "group": "stack",
                 **_mean_metrics([scoring.score(p, 0.5) for p, _ in main_probs]), "validation_macro_f1": None,
                 "seconds": None})
    cost = {"prepare_seconds": round(prepare_seconds, 1),
            "stage_seconds": {k: round(v, 1) for k, v in stacked.stage_seconds.items()},
            "meta_seconds_mean": round(float(np.mean(meta_seconds)), 1),
            "meta_seconds_max": round(float(np.max(meta_seconds)), 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), **peak_gpu_mb(device), "device": str(device)}
    return summary(config, scoring, rows, seeds, only, cost)


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
