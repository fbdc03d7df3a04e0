"""Meta-learner settings of a stacked recipe, tried on its cached stage-1 and stage-2 inputs: for each
variant, N meta-learners (the members ``meta.ensemble = N`` would train: seeds seed + 1000 i), their
validation and dev macro-F1 (mean ± std), and the ensemble of the N (``MetaEnsemble``: logits
averaged, thresholds re-chosen on its validation probabilities), which is exactly what
``meta.ensemble = N`` trains. Choose on the validation columns; dev is only reported.

    EMOSCOPE_DATA_ROOT=../shared/datasets .venv/bin/python benchmarks/meta_sweep.py \
        training/configs/brighter-ary-union-gemma-frozen-tfidf-stack.toml WORK_DIR --seeds 3 \
        --variant "recipe" --variant "hidden 256: meta.hidden_size=256" \
        --variant "dropout 0.5: meta.dropout=0.5, meta.input_dropout=0.2" [--output F.json]

A variant is ``NAME`` (the recipe as it is) or ``NAME: section.key=value, ...`` with section ``meta``
or ``loss``; values are read as TOML scalars.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import torch

from emoscope.config import RunConfig, load_config
from emoscope.training.ablate import Scoring
from emoscope.training.run import load_run_data
from emoscope.training.stack.stage2 import prepare_stack
from emoscope.training.stack.stage3 import MetaSelection, fit_meta, meta_probs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import machine  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict[str, dict[str, object]]]:
    name, _, rest = text.partition(":")
    changes: dict[str, dict[str, object]] = {"meta": {}, "loss": {}}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, _, value = item.partition("=")
        section, _, field = key.strip().partition(".")
        if section not in changes or not field:
            raise SystemExit(f"--variant {text!r}: {key.strip()!r} is not meta.<key> or loss.<key>")
        changes[section][field] = tomllib.loads(f"v = {value.strip()}")["v"]
    return name.strip(), changes


def variant_recipe(config: RunConfig, changes: dict[str, dict[str, object]]) -> RunConfig:
    return config.replace(meta=dataclasses.replace(config.meta, **changes["meta"]),
                          loss=dataclasses.replace(config.loss, **changes["loss"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("work_dir", type=Path)
    ap.add_argument("--seeds", type=int, default=3, help="meta-learners per variant (at least 2: they make the ensemble)")
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    config = load_config(args.recipe)
    variants = [parse_variant(v) for v in args.variant]
    device = torch.device("cpu")
    scoring = Scoring(load_run_data(config))
    stacked = prepare_stack(config, scoring.data, device=device, work=args.work_dir, progress=False,
                            log=lambda m: None)
    names = list(stacked.encoders)
    selection = MetaSelection.of(stacked, names, scoring.data)
    scored_rows = stacked.select(names, scoring.split)
    scored_base = stacked.select_base(names, scoring.split)
    print(f"{config.name}: scored on {scoring.scored.name} ({len(scoring.scored)} texts), validation {scoring.data.validation.name}; "
          f"{machine()}", flush=True)
    results = []
    for name, changes in variants:
        recipe = variant_recipe(config, changes)
        recipe = recipe.replace(meta=dataclasses.replace(recipe.meta, ensemble=args.seeds))
        fit = fit_meta(recipe, selection, device=device, log=lambda m: None)
        members = fit.members or [fit]
        val_f1 = [scoring.validation_f1(m.val_probs, m.thresholds) for m in members]
        dev_f1 = [scoring.score(meta_probs(m.meta, scored_rows, device, scored_base), m.thresholds)["macro_f1"]
                  for m in members]
        seconds = [m.seconds for m in members]
        mean_dev = meta_probs(fit.meta, scored_rows, device, scored_base)
        row = {"variant": name, "changes": changes, "seeds": args.seeds,
               "val": float(np.mean(val_f1)), "val_std": float(np.std(val_f1)),
               "dev": float(np.mean(dev_f1)), "dev_std": float(np.std(dev_f1)),
               "ensemble_val": scoring.validation_f1(fit.val_probs, fit.thresholds),
               "ensemble_dev": scoring.score(mean_dev, fit.thresholds)["macro_f1"],
               "seconds_per_seed": float(np.mean(seconds))}
        results.append(row)
        print(f"{name:32s} val {row['val']:.3f} ± {row['val_std']:.3f}  dev {row['dev']:.3f} ± {row['dev_std']:.3f}  "
              f"ensemble of {args.seeds}: val {row['ensemble_val']:.3f} dev {row['ensemble_dev']:.3f}  "
              f"{row['seconds_per_seed']:.0f} s/seed", flush=True)
    if args.output:
        args.output.write_text(json.dumps({"recipe": config.name, "machine": machine(), "rows": results}, indent=1))


if __name__ == "__main__":
    main()
