"""Runtime and peak memory of the explainers against the naive way, on a 30-word Arabic and a
30-word English text, in one run; and how soon the progressive methods show a first estimate.

Each measurement runs in its own child process (so peak memory is that method's own), which
loads the bundle, explains once to warm up the code paths on a short text, then times one
explanation of the 30-word text. The naive references: LIME scoring its perturbed texts one at a
time (batch 1); Integrated Gradients label by label with Captum's ``IntegratedGradients``
defaults (50 steps, every step in one batch), both in fp32. The project's methods run at their
default precision ``auto`` (bf16 on AMX CPUs) and again in fp32, to show what each part buys.
Reported: seconds, peak RSS of the child, and the RSS right after loading the model (the
method's own cost is the difference). The ``-stream`` cases run LIME and exact IG progressively
(``explain(..., on_partial=...)``) and report the seconds to the first estimate beside the total
(the ratio to the same run's total and to the non-streaming case, run in the same invocation, is
what to compare); ``layer-ig`` is the fast attribution at the word-vector layer. The CPU model and
the load average at the start and end are written with the results.

    .venv/bin/python benchmarks/explain_speed.py --model models/default --output benchmarks/results/explain-speed.json
    .venv/bin/python benchmarks/explain_speed.py --model /tmp/bundles/default --threads 2 \
        --cases layer-ig,ig-stream,ig-fp32,lime-stream,lime-1000-fp32 --output benchmarks/results/explain-progressive.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from timing import machine  # benchmarks/timing.py, beside this script

CASES = {  # name: (method, parameters, description); "auto" precision = bf16 on AMX CPUs
    "attention": ("attention", {}, "attention (last layer, heads averaged)"),
    "ig": ("ig", {"n_steps": 50, "internal_batch_size": 16}, "IG, all labels together, 50 steps (auto)"),
    "ig-fp32": ("ig", {"n_steps": 50, "internal_batch_size": 16, "precision": "fp32"},
                "IG, all labels together, 50 steps, fp32"),
    "ig-naive": ("ig-captum", {}, "IG naive: Captum defaults, one label at a time"),
    "lime-1000": ("lime", {"samples": 1000, "batch_size": 64}, "LIME 1,000 samples, batches of 64 (auto)"),
    "lime-1000-fp32": ("lime", {"samples": 1000, "batch_size": 64, "precision": "fp32"},
                       "LIME 1,000 samples, batches of 64, fp32"),
    "lime-1000-naive": ("lime", {"samples": 1000, "batch_size": 1, "precision": "fp32"},
                        "LIME 1,000 samples naive: batch 1, fp32"),
    "lime-5000": ("lime", {"samples": 5000, "batch_size": 64}, "LIME 5,000 samples, batches of 64 (auto)"),
    "layer-ig": ("layer-ig", {}, "layer-ig (word-vector layer), all labels, default steps"),
    "ig-stream": ("ig", {"n_steps": 50, "internal_batch_size": 16, "precision": "fp32"},
                  "IG 50 steps fp32, progressive: first estimate | total"),
    "lime-stream": ("lime", {"samples": 1000, "batch_size": 64, "precision": "fp32"},
                    "LIME 1,000 fp32, progressive: first estimate | total"),
    "ig-stream-predicted": ("ig", {"n_steps": 32, "internal_batch_size": 16, "precision": "fp32"},
                            "IG 32 steps fp32, predicted labels (the page's default), progressive"),
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def thirty_words(spec: str) -> str:
    from emoscope.data import load_dataset
    from emoscope.text import segment_words

    for text in load_dataset(spec).texts:
        words = segment_words(text)
        if len(words) >= 30:
            return text[: words[29].end]
    raise SystemExit(f"no text of 30 words in {spec}")


def child(model_dir: str, case: str, text: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from emoscope.explain import ExplainModel, explain
    from emoscope.predict import Predictor

    model = ExplainModel(Predictor(model_dir, device="cpu", verify=False))
    loaded = rss_mb()
    method, params, _ = CASES[case]
    if method == "ig-captum":
        from captum.attr import IntegratedGradients

        def run(t: str) -> None:
            _, _, model_words = model.words(t)
            batches = model.batches(model_words)
            inputs, bases = model.input_embeddings(batches), model.baselines(batches)
            ig = IntegratedGradients(lambda *xs: model.forward_embeds(list(xs), batches, len(model_words)))
            for j in range(len(model.labels)):
                ig.attribute(tuple(inputs), baselines=tuple(bases), target=j)
    else:
        def run(t: str) -> None:
            labels = None  # all labels, except for the page's default: the labels predicted (else the most probable)
            if case.endswith("-predicted"):
                [first] = model.predictor.predict([t])
                labels = first.labels or [max(first.probabilities, key=first.probabilities.get)]
            started = time.perf_counter()
            firsts = []

            def on_partial(_) -> None:
                firsts.append(time.perf_counter() - started)
            exp = explain(model, t, method, labels, params, on_partial=on_partial if "-stream" in case else None)
            info["precision"] = exp.diagnostics.get("precision", "fp32")
            if firsts:
                info["first_estimate_s"], info["estimates"] = firsts[0], len(firsts)
    info = {"precision": "fp32"}
    run("a short warm up text")
    start = time.perf_counter()
    run(text)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": rss_mb(), "rss_after_load_mb": loaded, **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--langs", default="ar,en", help="which of the two texts: ar, en or both")
    parser.add_argument("--output")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "TEXT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.child[0], args.child[1], args.threads)))
        return
    texts = {lang: thirty_words(f"semeval2018:{lang}:dev") for lang in args.langs.split(",")}
    results: dict[str, dict] = {}
    before = machine()
    print(f"{before['cpu']}, load average {before['load'][0]:.2f} at the start", flush=True)
    for lang, text in texts.items():
        for case in args.cases.split(","):
            proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--threads", str(args.threads),
                                   "--child", case, text], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            results.setdefault(lang, {})[case] = row
            first = f" | first estimate {row['first_estimate_s']:5.2f} s of {row['estimates']}" if "estimates" in row else ""
            print(f"{lang} | {CASES[case][2]:<56} | {row['precision']:<4} | {row['seconds']:7.2f} s | peak RSS {row['peak_rss_mb']:6.0f} MiB "
                  f"(after load {row['rss_after_load_mb']:6.0f}){first}", flush=True)
    after = machine()
    print(f"load average {after['load'][0]:.2f} at the end", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"model": args.model, "threads": args.threads, "texts": texts,
                                                 "machine": {"cpu": before["cpu"], "load_start": before["load"],
                                                             "load_end": after["load"]},
                                                 "results": results}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
