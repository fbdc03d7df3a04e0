"""layer-ig on one text: seconds for all labels, against one prediction of the same text (the
reference, timed alternately in the same run), and the completeness gap per step count.

A 30-word Arabic and a 30-word English text (the first dev text of SemEval-2018 ar / en with 30
words, cut there), every label, fp32, ``--threads`` torch threads; one warm-up, then ``--repeats``
alternating runs of a prediction and of ``explain(..., "layer-ig")``: the medians, their ratio, and
the largest |completeness gap| over the labels for each of ``--steps``. The CPU model and the load
average at the start and end are written with the results.

    .venv/bin/python benchmarks/layer_ig_speed.py --model /tmp/bundles/default --threads 2 \
        --output benchmarks/results/layer-ig-speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from explain_speed import (
    thirty_words,  # the same 30-word texts as the explain timings (benchmarks/ is on sys.path)
)
from timing import machine


def measure(model, text: str, steps: list[int], repeats: int) -> dict:
    from emoscope.explain import explain

    model.predict_texts([text]), explain(model, text, "layer-ig")  # warm-up
    predict_t, layer_t = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_texts([text])
        predict_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        explain(model, text, "layer-ig")
        layer_t.append(time.perf_counter() - start)
    gaps = {}
    for n in steps:
        d = explain(model, text, "layer-ig", None, {"n_steps": n}).diagnostics["convergence_delta"]
        gaps[n] = max(abs(v) for v in d.values())
    p, q = statistics.median(predict_t), statistics.median(layer_t)
    return {"predict_s": p, "layer_ig_s": q, "ratio": q / p, "layer_ig_min_s": min(layer_t), "layer_ig_max_s": max(layer_t),
            "max_abs_gap_by_steps": gaps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", default="4,8,16,32,64")
    parser.add_argument("--output")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from emoscope.explain import ExplainModel
    from emoscope.predict import Predictor

    before = machine()
    model = ExplainModel(Predictor(args.model, device="cpu", verify=False))
    steps = [int(s) for s in args.steps.split(",")]
    results = {}
    for language in ("ar", "en"):
        text = thirty_words(f"semeval2018:{language}:dev")
        results[language] = measure(model, text, steps, args.repeats)
        r = results[language]
        print(f"{language}: layer-ig {r['layer_ig_s'] * 1e3:.0f} ms (min {r['layer_ig_min_s'] * 1e3:.0f}), one prediction "
              f"{r['predict_s'] * 1e3:.0f} ms, ratio {r['ratio']:.1f}; max |gap| by steps {r['max_abs_gap_by_steps']}")
    out = {"model": args.model, "threads": args.threads, "repeats": args.repeats, "labels": len(model.labels),
           "machine_start": before, "load_end": os.getloadavg(), "results": results}
    print(json.dumps({"machine": before, "load_end": out["load_end"]}))
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
