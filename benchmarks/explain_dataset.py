"""The dataset view end to end: layer IG of every label for every text of a dataset, aggregated
into the words that raise and lower each label, as ``emoscope explain --summary`` runs it.

Runs the command's own functions (``load_texts``, ``dataset_attributions`` without the cache,
``summarize``) on ``--data`` (default SemEval-2018 ar dev, 585 texts) with ``--threads`` torch
threads, and reports the wall time of the attribution and of the aggregation, the texts per second,
peak RSS, the median and 95th percentile of the per-text max |completeness gap|, the CPU model and
the load average at the start and end; then, as a reference measured in the same run, the
seconds the bundle's own ``predict_proba`` takes over the same texts (the encoders alone, once).

    .venv/bin/python benchmarks/explain_dataset.py --model /tmp/bundles/default --threads 2 \
        --output benchmarks/results/explain-dataset.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from layer_ig_speed import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="semeval2018:ar:dev")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--output")
    args = parser.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from emoscope.explain import ExplainModel
    from emoscope.explain.dataset import dataset_attributions, load_texts
    from emoscope.explain.word_summary import summarize
    from emoscope.predict import Predictor

    before = machine()
    model = ExplainModel(Predictor(args.model, device="cpu", verify=False))
    data = load_texts(args.data, model)
    marks = []

    def progress(done: int, total: int) -> None:
        marks.append((done, time.perf_counter()))
        print(f"\r{done}/{total} texts", end="\n" if done == total else "", flush=True)

    start = time.perf_counter()
    params = {"n_steps": args.steps} if args.steps else {}
    attr = dataset_attributions(model, data.texts, params, progress, cache=False)
    attributed = time.perf_counter() - start
    start = time.perf_counter()
    summary = summarize(attr, model.thresholds, data.gold, data.mask)
    aggregated = time.perf_counter() - start
    start = time.perf_counter()
    model.predict_texts(data.texts)
    predicted = time.perf_counter() - start
    gaps = np.abs(attr.delta).max(1)
    out = {"model": args.model, "data": data.name, "texts": len(data.texts), "threads": args.threads,
           "params": attr.params, "attribution_s": attributed, "aggregation_s": aggregated,
           "texts_per_s": len(data.texts) / attributed, "first_progress_s": marks[0][1] - (marks[-1][1] - attributed),
           "predict_reference_s": predicted, "ratio_to_predict": attributed / predicted,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "gap_median": float(np.median(gaps)), "gap_p95": float(np.percentile(gaps, 95)),
           "machine_start": before, "load_end": os.getloadavg(),
           "top_anger_words": [w["word"] for w in summary["labels"]["anger"]["all"]["raise"][:10]]
           if "anger" in summary["labels"] else []}
    print(json.dumps(out, ensure_ascii=False, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
