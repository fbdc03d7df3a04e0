"""Shared by the speed benchmarks: time a reference and a candidate on the same inputs, alternating."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def machine() -> dict:
    """The CPU model, its core count and the load averages now (1, 5, 15 min), for the record of a figure."""
    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), "unknown CPU")
    return {"cpu": name, "cores": os.cpu_count(), "load": list(os.getloadavg())}


def _seconds(fn: Callable, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare(cases: dict[str, Sequence[str]], reference: Callable, candidate: Callable, repeats: int,
            names: tuple[str, str]) -> dict[str, dict[str, float]]:
    """Median time of ``reference(batch)`` and ``candidate(batch)`` per case (one warm-up each,
    then ``repeats`` alternating runs), the candidate's overhead and throughput; prints a line per case."""
    results = {}
    for name, batch in cases.items():
        reference(batch), candidate(batch)  # warm-up
        ref_t, cand_t = [], []
        for _ in range(repeats):
            ref_t.append(_seconds(reference, batch))
            cand_t.append(_seconds(candidate, batch))
        ref_med, cand_med = statistics.median(ref_t), statistics.median(cand_t)
        results[name] = {"reference_ms": ref_med * 1e3, "predictor_ms": cand_med * 1e3,
                         "overhead_pct": (cand_med / ref_med - 1) * 100, "texts_per_s": len(batch) / cand_med}
        print(f"{name:>12}: {names[0]} {ref_med * 1e3:8.1f} ms | {names[1]} {cand_med * 1e3:8.1f} ms | "
              f"overhead {results[name]['overhead_pct']:+.1f}% | {results[name]['texts_per_s']:.0f} texts/s")
    return results
