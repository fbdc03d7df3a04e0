"""Peak memory of ``emoscope predict --input`` on a small and a 10x larger file, in one run.

Streaming in chunks means the peak should not grow with the file. Each size runs in its own
process (peak RSS from ``os.wait4`` of the child) so peaks are comparable.

    .venv/bin/python benchmarks/predict_memory.py --model benchmarks/results/quality/bundles/brighter-eng-minilm
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emoscope.data import load_dataset


def run_child(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="goemotions:en:train")
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    texts = load_dataset(args.data).texts
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in map(int, args.sizes.split(",")):
            src = Path(tmp) / f"in-{n}.csv"
            with src.open("w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["id", "text"])
                writer.writerows((i, texts[i % len(texts)]) for i in range(n))
            seconds, peak = run_child([sys.executable, "-m", "emoscope.cli", "predict", "--model", args.model,
                                       "--input", str(src), "--output", str(Path(tmp) / f"out-{n}.csv"), "--quiet"])
            results[n] = {"seconds": seconds, "peak_rss_mb": peak, "rows_per_s": n / seconds,
                          "input_mb": src.stat().st_size / 2**20}
            print(f"{n:>7} rows ({results[n]['input_mb']:.1f} MB): {seconds:6.1f} s, {n / seconds:5.0f} rows/s, "
                  f"peak RSS {peak:6.0f} MiB")
    if args.output:
        Path(args.output).write_text(json.dumps({"model": args.model, "data": args.data, "results": results}, indent=1))


if __name__ == "__main__":
    main()
