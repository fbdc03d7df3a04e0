"""One process or two under ``accelerate launch``: the same training and the same file scoring, in one run.

Training: one MiniLM-L6 fine-tune (a ``smoke``-like recipe: BRIGHTER eng, ``--max-train`` texts,
batch 16, ``--epochs`` epochs, no eval set) as one process on 2 threads, one process on 1 thread,
and two processes on 1 thread each (DDP over gloo: ``emoscope train --processes 2``). Scoring: the
bundle that the single-process run wrote scores ``--rows`` BRIGHTER eng texts with
``emoscope predict --input`` in the same three set-ups (two processes: ``accelerate launch
--multi_gpu --num_processes 2``, the file split by chunk). Wall time per run, and the peak RSS of
each process (psutil, sampled every 0.2 s), next to the CPU and the load average.

    .venv/bin/python benchmarks/distributed.py --output benchmarks/results/distributed.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from emoscope.cli.train import launch_command
from emoscope.data import load_dataset

ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run(command: list[str], threads: int) -> dict:
    """Wall seconds and each emoscope process's peak RSS (MiB) of one command."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in family:
            try:
                if "emoscope.cli" in " ".join(p.cmdline()):
                    peaks[p.pid] = max(peaks.get(p.pid, 0.0), p.memory_info().rss / 2**20)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{out[-3000:]}")
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": sorted(round(v) for v in peaks.values()),
            "load_after": os.getloadavg()[0]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emoscope(args: list[str], processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "emoscope.cli", *args]
    return launch_command(processes, args, port=free_port())


def write_recipe(path: Path, max_train: int, epochs: int) -> Path:
    path.write_text(f"""
name = "ddp-bench"
[data]
train = "brighter:eng:train"
validation = "brighter:eng:dev"
max_train = {max_train}
max_validation = 200
[[encoders]]
source = "minilm-l6"
pooling = "mean"
max_length = 64
[training]
lr = 1e-4
head_lr = 1e-3
batch_size = 16
epochs = {epochs}
patience = {epochs}
""", encoding="utf-8")
    return path


SETUPS = (("1 process x 2 threads", 1, 2), ("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train", type=int, default=480)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    results = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_before": os.getloadavg(),
               "max_train": args.max_train, "epochs": args.epochs, "rows": args.rows, "train": {}, "predict": {}}
    print(f"{results['cpu']}, {results['cores']} cores, load {results['load_before'][0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recipe = write_recipe(tmp / "recipe.toml", args.max_train, args.epochs)
        for name, processes, threads in SETUPS:
            bundle = tmp / f"bundle-{processes}-{threads}"
            r = run(emoscope(["train", "--config", str(recipe), "--output", str(bundle), "--quiet"], processes), threads)
            r["val_macro_f1"] = json.loads((bundle / "manifest.json").read_text())["metrics"]["validation"]["macro_f1"]
            results["train"][name] = r
            print(f"train   {name:<24} {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mb']} MiB  "
                  f"val macro-F1 {r['val_macro_f1']:.3f}  load {r['load_after']:.2f}")
        texts = load_dataset("brighter:eng:train").texts
        source = tmp / "in.csv"
        with source.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text"])
            writer.writerows((i, texts[i % len(texts)]) for i in range(args.rows))
        outputs = []
        for name, processes, threads in SETUPS:
            out = tmp / f"out-{processes}-{threads}.csv"
            r = run(emoscope(["predict", "--model", str(tmp / "bundle-1-2"), "--input", str(source),
                              "--output", str(out), "--quiet"], processes), threads)
            r["rows_per_s"] = round(args.rows / r["seconds"], 1)
            results["predict"][name] = r
            outputs.append(out.read_bytes())
            print(f"predict {name:<24} {r['seconds']:7.1f} s  {r['rows_per_s']:6.1f} rows/s  "
                  f"peak RSS {r['peak_rss_mb']} MiB  load {r['load_after']:.2f}")
        # Same thread count per process: two processes must write exactly the one-process file.
        results["two_processes_output_identical_to_one_thread"] = outputs[2] == outputs[1]
        print(f"2 x 1 thread output == 1 x 1 thread output: {outputs[2] == outputs[1]}")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
