"""Quality benchmark: train and evaluate every model on the dev splits, in one run.

For each dev set (BRIGHTER eng, arq, ary; SemEval-2018 E-c ar) it runs, each in its own
process so time and peak memory belong to that job alone:
- the reference: TF-IDF (word 1-2 + char 2-5 grams) + one-vs-rest logistic regression with
  class_weight="balanced" and per-class thresholds tuned on 5-fold out-of-fold predictions;
- the fine-tuned encoders (recipes in training/configs): ``emoscope train``, then the
  project's own ``emoscope evaluate`` on the dev split (bundle thresholds, and 0.5).
Writes benchmarks/results/quality.json and the tables between the quality markers in
docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/quality.py                  # everything (~1 h on 2 CPU cores)
    .venv/bin/python benchmarks/quality.py --only eng       # one dev set
    .venv/bin/python benchmarks/quality.py --jobs 2         # two jobs at once, one torch thread each
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from emoscope.bundle import read_manifest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "BENCHMARKS.md"

DATASETS = {
    "eng": {"title": "BRIGHTER eng", "train": "brighter:eng:train", "dev": "brighter:eng:dev",
            "recipes": ["brighter-eng-minilm", "brighter-eng-me5"]},
    "arq": {"title": "BRIGHTER arq (Algerian)", "train": "brighter:arq:train", "dev": "brighter:arq:dev",
            "recipes": ["brighter-arq-me5"]},
    "ary": {"title": "BRIGHTER ary (Moroccan)", "train": "brighter:ary:train", "dev": "brighter:ary:dev",
            "recipes": ["brighter-ary-me5"]},
    "ar": {"title": "SemEval-2018 E-c ar", "train": "semeval2018:ar:train", "dev": "semeval2018:ar:dev",
           "recipes": ["semeval2018-ar-me5"]},
}


def tfidf_job(train_spec: str, dev_spec: str, output: Path) -> None:
    """Runs inside a child process: fit the reference, score dev, write JSON."""
    from emoscope.baseline import TfidfBaseline
    from emoscope.data import load_dataset
    from emoscope.metrics import compute_metrics

    start = time.perf_counter()
    train, dev = load_dataset(train_spec), load_dataset(dev_spec)
    model = TfidfBaseline().fit(train.texts, train.labels, cv_folds=5, seed=0)
    seconds = time.perf_counter() - start
    probs = model.predict_proba(dev.texts)
    tuned = compute_metrics(dev.labels, probs, model.thresholds_, label_names=dev.label_names)
    at_half = compute_metrics(dev.labels, probs, 0.5, label_names=dev.label_names)
    output.write_text(json.dumps({"metrics": tuned, "macro_f1_at_0.5": at_half["macro_f1"], "train_seconds": seconds,
                                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(cmd: list[str], log: Path, threads: int | None) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")


def reference_chain(key: str, out: Path, threads: int | None) -> tuple[str, dict]:
    spec = DATASETS[key]
    job = out / f"{key}-tfidf.json"
    print(f"[{key}] TF-IDF reference", flush=True)
    run([sys.executable, __file__, "--tfidf-job", spec["train"], spec["dev"], str(job)], out / f"{key}-tfidf.log", threads)
    ref = json.loads(job.read_text())
    return "TF-IDF + LR (reference)", {**ref["metrics"], "macro_f1_at_0.5": ref["macro_f1_at_0.5"],
                                       "train_seconds": ref["train_seconds"], "peak_rss_mb": ref["peak_rss_mb"]}


def recipe_chain(key: str, recipe: str, out: Path, retrain: bool, threads: int | None) -> tuple[str, dict]:
    """Train one recipe (unless its bundle exists), then score it on dev with `emoscope evaluate`."""
    dev = DATASETS[key]["dev"]
    emoscope = [sys.executable, "-m", "emoscope.cli"]
    bundle = out / "bundles" / recipe
    if retrain or not (bundle / "manifest.json").exists():
        print(f"[{key}] training {recipe}", flush=True)
        run([*emoscope, "train", "--config", f"training/configs/{recipe}.toml", "--output", str(bundle),
             "--overwrite", "--quiet"], out / f"{recipe}-train.log", threads)
    print(f"[{key}] evaluating {recipe}", flush=True)
    run([*emoscope, "evaluate", "--model", str(bundle), "--data", dev, "--output", str(out / f"{recipe}-dev.json")],
        out / f"{recipe}-eval.log", threads)
    run([*emoscope, "evaluate", "--model", str(bundle), "--data", dev, "--threshold-05",
         "--output", str(out / f"{recipe}-dev-0.5.json")], out / f"{recipe}-eval-0.5.log", threads)
    manifest = read_manifest(bundle, verify=False)
    training = manifest.training
    tuned = json.loads((out / f"{recipe}-dev.json").read_text())
    half = json.loads((out / f"{recipe}-dev-0.5.json").read_text())
    source = manifest.model.encoders[0].source
    return f"{source} fine-tuned (`{recipe}`)", {
        **tuned, "macro_f1_at_0.5": half["macro_f1"], "train_seconds": training["seconds"],
        "peak_rss_mb": training["peak_rss_mb"], "best_epoch": training["best_epoch"],
        "epochs_run": training["epochs_run"], "torch_threads": training["torch_threads"]}


def bench(keys: list[str], out: Path, retrain: bool, jobs: int) -> dict:
    """Run every chain (reference and recipes of every dev set), ``jobs`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, (os.cpu_count() or 2) // jobs) if jobs > 1 else None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {key: [pool.submit(reference_chain, key, out, threads)]
                   + [pool.submit(recipe_chain, key, r, out, retrain, threads) for r in DATASETS[key]["recipes"]]
                   for key in keys}
        results = {}
        for key, parts in futures.items():
            spec = DATASETS[key]
            results[key] = {"title": spec["title"], "train": spec["train"], "dev": spec["dev"],
                            "rows": dict(f.result() for f in parts)}
    return results


def markdown(results: dict) -> str:
    lines = []
    for res in results.values():
        rows = res["rows"]
        labels = list(next(iter(rows.values()))["per_class"])
        lines += [f"#### {res['title']} (train `{res['train']}`, scored on `{res['dev']}`)", "",
                  "| model | macro-F1 | micro-F1 | Jaccard | Hamming | macro-F1 @0.5 | train time | peak RSS |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            lines.append(f"| {name} | **{r['macro_f1']:.3f}** | {r['micro_f1']:.3f} | {r['jaccard']:.3f} | "
                         f"{r['hamming_loss']:.3f} | {r['macro_f1_at_0.5']:.3f} | {r['train_seconds']:.0f} s | "
                         f"{r['peak_rss_mb']:.0f} MiB |")
        lines += ["", "| per-class F1 | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for name, r in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{r['per_class'][lab]['f1']:.3f}" for lab in labels) + " |")
        support = next(iter(rows.values()))["per_class"]
        lines += ["| dev support | " + " | ".join(str(support[lab]["support"]) for lab in labels) + " |", ""]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    start, end = "<!-- quality:start -->", "<!-- quality:end -->"
    doc = DOC.read_text(encoding="utf-8")
    if start not in doc or end not in doc:
        raise SystemExit(f"{DOC} lacks the {start} / {end} markers")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated subset of: " + ",".join(DATASETS))
    parser.add_argument("--retrain", action="store_true", help="retrain bundles that already exist in the results folder")
    parser.add_argument("--jobs", type=int, default=1,
                        help="run this many jobs at once, each with cpu_count/jobs torch threads")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    parser.add_argument("--tfidf-job", nargs=3, metavar=("TRAIN", "DEV", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tfidf_job:
        tfidf_job(args.tfidf_job[0], args.tfidf_job[1], Path(args.tfidf_job[2]))
        return
    keys = args.only.split(",") if args.only else list(DATASETS)
    unknown = set(keys) - set(DATASETS)
    if unknown:
        raise SystemExit(f"unknown dataset(s) {sorted(unknown)}; choose from {list(DATASETS)}")
    out = RESULTS / "quality"
    out.mkdir(parents=True, exist_ok=True)
    summary_path = RESULTS / "quality.json"
    results = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    started = time.perf_counter()
    results.update(bench(keys, out, args.retrain, args.jobs))
    results = {k: results[k] for k in DATASETS if k in results}
    summary_path.write_text(json.dumps(results, indent=1))
    text = markdown(results)
    print(text)
    if not args.no_doc:
        write_doc(text)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
