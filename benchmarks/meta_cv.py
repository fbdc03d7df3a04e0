"""Recipes compared on their training texts, not only on the validation split: K-fold
cross-validation of the meta-learner over the training split's out-of-fold stage-2 inputs.

Validation holds 15 % of train (415 texts on BRIGHTER eng), too few to separate recipes whose
validation scores differ by 0.005. Every training text's stage-2 input is already out of fold
(each fine-tuned encoder reads it with the fold model that did not train on it; the TF-IDF base
likewise), so the meta-learner can be scored on training texts it did not train on: for each of K
folds of the recipe's own training texts, one meta-learner trains on the other folds (and on the
extra data, with ``data.extra_train``), early-stops and chooses its thresholds on validation exactly
as in training, and predicts the held-out fold. The pooled predictions give one macro-F1 over all
the training texts per seed. Recipes passed together must share a stage-1/2 cache (WORK_DIR) and
their data. Nothing here reads the dev split.

    EMOSCOPE_DATA_ROOT=../shared/datasets .venv/bin/python benchmarks/meta_cv.py WORK_DIR \
        training/configs/brighter-eng-gemma-frozen-stack.toml training/configs/brighter-eng-gemma-ft-stack.toml \
        --folds 3 --seeds 2 [--output F.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emoscope.config import RunConfig, load_config
from emoscope.metrics import compute_metrics
from emoscope.training.ablate import Scoring
from emoscope.training.run import load_run_data
from emoscope.training.stack.stage2 import prepare_stack
from emoscope.training.stack.stage3 import MEMBER_SEED_STEP, MetaSelection, fit_meta, meta_probs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import machine  # noqa: E402

FOLD_SEED = 7  # the same K folds for every recipe and seed


def cv_folds(n_own: int, k: int) -> list[np.ndarray]:
    """K disjoint folds of the first ``n_own`` training positions (the recipe's own texts)."""
    return np.array_split(np.random.default_rng(FOLD_SEED).permutation(n_own), k)


def fold_selection(selection: MetaSelection, keep: np.ndarray) -> MetaSelection:
    """``selection`` with only the training texts at positions ``keep``."""
    base = None if selection.train_base is None else selection.train_base[keep]
    return dataclasses.replace(selection, train=selection.train.take(keep), train_ds=selection.train_ds.subset(keep),
                               train_base=base)


def cross_validate(config: RunConfig, selection: MetaSelection, scoring: Scoring, n_own: int, k: int,
                   seed: int) -> dict[str, object]:
    """One seed of K-fold CV: pooled macro-F1 over the own training texts, per-fold figures."""
    device = torch.device("cpu")
    member = config.replace(meta=dataclasses.replace(config.meta, ensemble=1),
                            training=dataclasses.replace(config.training, seed=seed))
    n_train = len(selection.train_ds)
    probs = np.zeros((n_own, len(selection.train_ds.label_names)), np.float32)
    thresholds = np.zeros_like(probs)
    folds, started = [], time.perf_counter()
    for held in cv_folds(n_own, k):
        keep = np.setdiff1d(np.arange(n_train), held)
        fit = fit_meta(member, fold_selection(selection, keep), device=device, log=lambda m: None)
        base = None if selection.train_base is None else selection.train_base[held]
        probs[held] = meta_probs(fit.meta, selection.train.take(held), device, base)
        thresholds[held] = fit.thresholds
        folds.append({"fold_macro_f1": _f1(selection, held, probs[held], fit.thresholds),
                      "validation_macro_f1": scoring.validation_f1(fit.val_probs, fit.thresholds),
                      "best_epoch": fit.best_epoch, "seconds": fit.seconds})
        print(f"  {config.name} seed {seed} fold {len(folds)}/{k}: macro-F1 {folds[-1]['fold_macro_f1']:.4f}, "
              f"validation {folds[-1]['validation_macro_f1']:.4f}, {fit.seconds:.0f} s", flush=True)
    own = np.arange(n_own)
    decided = (probs >= thresholds).astype(np.float32)  # each fold's own thresholds, then pooled
    return {"seed": seed, "cv_macro_f1": _f1(selection, own, decided, 0.5), "folds": folds,
            "seconds": time.perf_counter() - started}


def _f1(selection: MetaSelection, rows: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float) -> float:
    ds = selection.train_ds
    mask = None if ds.label_mask is None else ds.label_mask[rows]
    return float(compute_metrics(ds.labels[rows], probs, thresholds, label_mask=mask)["macro_f1"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work_dir", type=Path)
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2, help="seeds per recipe: the recipe's seed, +1000, +2000, …")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    print(machine(), flush=True)
    results = []
    for recipe in args.recipes:
        config = load_config(recipe)
        data = load_run_data(config)
        stacked = prepare_stack(config, data, device=torch.device("cpu"), work=args.work_dir, progress=False,
                                log=lambda m: None)
        selection = MetaSelection.of(stacked, stacked.encoders, data)
        n_own = len(data.own_train if data.own_train is not None else data.train)
        runs = [cross_validate(config, selection, Scoring(data), n_own, args.folds, config.training.seed + MEMBER_SEED_STEP * i)
                for i in range(args.seeds)]
        scores = [r["cv_macro_f1"] for r in runs]
        val = [f["validation_macro_f1"] for r in runs for f in r["folds"]]
        row = {"recipe": config.name, "n_scored": n_own, "folds": args.folds, "runs": runs,
               "cv_macro_f1": float(np.mean(scores)), "cv_std": float(np.std(scores)),
               "fold_validation_macro_f1": float(np.mean(val))}
        results.append(row)
        print(f"{config.name:48s} CV macro-F1 over {n_own} training texts {row['cv_macro_f1']:.4f} ± {row['cv_std']:.4f} "
              f"(seeds {', '.join(f'{s:.4f}' for s in scores)}); the fold models' validation {row['fold_validation_macro_f1']:.4f}; "
              f"{np.mean([r['seconds'] for r in runs]):.0f} s per seed", flush=True)
        if args.output:
            args.output.write_text(json.dumps({"machine": machine(), "rows": results}, indent=1))


if __name__ == "__main__":
    main()
