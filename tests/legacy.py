"""Helper run in a subprocess by tests/test_compat.py, against whichever EmoScope is first on
PYTHONPATH (the tree of the commit before the redesign, or the current checkout).

    python tests/legacy.py train  PLAN.json   # train bundles (old code only)
    python tests/legacy.py record PLAN.json   # reference probabilities and explanations, then the
                                              # plan's CLI runs if it has any (old code only)
    python tests/legacy.py cli    PLAN.json   # run CLI invocations, keep stdout and exit codes (either side)

Every plan holds ``expect_root``: the folder ``emoscope`` must be imported from, checked first,
so a test never compares the new code with itself. ``threads`` is the test process's torch
thread count (a different one can change the last bits of a float sum).

This file talks to the old code, so it may only use APIs that existed at 6aeffa0; it is not
imported by the test process.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from pathlib import Path


def _check_root(plan: dict) -> None:
    import emoscope

    where = Path(emoscope.__file__).resolve()
    root = Path(plan["expect_root"]).resolve()
    if root not in where.parents:
        raise SystemExit(f"legacy.py: emoscope was imported from {where}, not from under {root}")


def _threads(plan: dict) -> None:
    import torch

    if plan.get("threads"):
        torch.set_num_threads(int(plan["threads"]))


def train(plan: dict) -> int:
    """Train each recipe (a dict for RunConfig.from_dict, or a .toml/.json path) into its output."""
    from dataclasses import replace

    from emoscope.config import RunConfig, load_config
    from emoscope.errors import DataError, EncoderError

    for run in plan["runs"]:
        recipe = run["recipe"]
        config = RunConfig.from_dict(recipe) if isinstance(recipe, dict) else load_config(recipe)
        try:
            if config.kind == "stacked":
                from emoscope.stack import train_stack

                # stage-1 models and embeddings in this run's own folders: nothing reused from
                # (or left in) the user's cache, which a run of the new code may have filled
                config = config.replace(stack=replace(config.stack, cache_dir=run["embeddings"]))
                train_stack(config, run["output"], progress=False, log=lambda _: None, work=Path(run["work"]))
            else:
                from emoscope.training import train as train_one

                train_one(config, run["output"], progress=False, log=lambda _: None)
        except (EncoderError, DataError) as exc:  # the environment lacks a packaged model or dataset
            print(f"MISSING: {exc}", file=sys.stderr)
            return 3
    return 0


def _jsonable(value):
    return json.loads(json.dumps(value))


def record(plan: dict) -> int:
    """For each bundle: probabilities (batched and one text at a time), labels, thresholds and
    the explanations of the plan, written under ``out``."""
    import numpy as np

    from emoscope.explain import explain
    from emoscope.predict import Predictor

    for item in plan["bundles"]:
        out = Path(item["out"])
        out.mkdir(parents=True, exist_ok=True)
        predictor = Predictor(item["path"])
        np.save(out / "probs.npy", predictor.predict_proba(item["texts"]))
        np.save(out / "probs_single.npy", np.concatenate([predictor.predict_proba([t]) for t in item["texts"]]))
        np.save(out / "thresholds.npy", np.asarray(predictor.thresholds))
        (out / "labels.json").write_text(json.dumps(list(predictor.labels), ensure_ascii=False), encoding="utf-8")
        results = []
        for call in item["explain"]:
            try:
                raw = explain(predictor, call["text"], call["method"], call["labels"], call["params"]).to_json()
                raw.pop("runtime_s", None)
                results.append({"result": _jsonable(raw)})
            except Exception as exc:  # the refusal is behaviour too: the new code must refuse alike
                results.append({"error": [type(exc).__name__, str(exc)]})
        (out / "explanations.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return cli(plan) if plan.get("runs") else 0


def cli(plan: dict) -> int:
    """Run each ``argv`` through ``emoscope.cli.main`` (what ``python -m emoscope.cli`` runs) in
    its ``cwd``; stdout and the exit code go to ``<cwd>/<name>.stdout`` and ``<name>.rc``.
    One process for many invocations: a Python start with torch costs seconds on a shared CPU."""
    import os

    from emoscope.cli import main

    for run in plan["runs"]:
        cwd = Path(run["cwd"])
        cwd.mkdir(parents=True, exist_ok=True)
        os.chdir(cwd)
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(run["argv"]))
            except SystemExit as exc:  # argparse errors
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:
                traceback.print_exc()
                code = "exception"
        (cwd / f"{run['name']}.stdout").write_text(stdout.getvalue(), encoding="utf-8")
        (cwd / f"{run['name']}.stderr").write_text(stderr.getvalue(), encoding="utf-8")
        (cwd / f"{run['name']}.rc").write_text(str(code), encoding="utf-8")
    return 0


if __name__ == "__main__":
    command, plan_path = sys.argv[1], sys.argv[2]
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    _check_root(plan)
    _threads(plan)
    sys.exit({"train": train, "record": record, "cli": cli}[command](plan))
