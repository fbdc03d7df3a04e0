"""Throughput of a bundle on the fast CPU path (``--fast``) against fp32 and its encoders' FLOP-count limit, in one run.

The texts: SemEval-2018 E-c ar dev (585) and en dev (886), then BRIGHTER eng, arq and ary dev
(116, 100, 267), then repeats of the first ones up to ``--n`` (2,000: 46 repeated). In the same process, on the same threads:

* the CPU's achieved fp32 matmul rate, from plain ``torch.matmul`` of an encoder layer's shapes
  (1,536 tokens x 384 by 384 x 384 four times, by 384 x 1536 and 1536 x 384, as a BERT layer has
  them), best round of 4 s, measured before, between and after the two paths (median used);
* the encoders' FLOPs for these texts, counted on the length-ordered batches the model pads them
  into (every linear layer, 2 FLOPs per multiply-add, and the attention products), and the limit
  they set: texts / (FLOPs / matmul rate);
* the fp32 path (``Predictor(model)``) and the fast path (``Predictor(model, fast=True)``) on all
  texts, timed after a warm-up, with the probability deviation between them, and both paths'
  macro-F1 on ar dev and en dev at their own thresholds (what ``emoscope evaluate [--fast]`` reports);
* ``--candidates K``: the candidates for the fast path on K of the texts (evenly spaced), the whole model each
  time: torch fp32 on 2 and 1 threads, torch int8 (``quantize_dynamic`` of the encoders' ``nn.Linear``), ONNX Runtime
  fp32 on 2 and 1 threads, ONNX Runtime int8 (its ``quantize_dynamic``, per channel), with their
  deviation from fp32.

    .venv/bin/python benchmarks/fast_cpu.py --model /tmp/bundles/default-fast --output benchmarks/results/fast_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import torch
from torch import nn

from emoscope.data import align_labels, load_dataset
from emoscope.encoders import cache_dir
from emoscope.metrics import compute_metrics
from emoscope.models.fast_cpu import (
    OrtEncoder,
    export_encoder,
    ort_session,
    replace_module,
)
from emoscope.models.runtime import length_batches
from emoscope.predict import Predictor

FILL = ("brighter:eng:dev", "brighter:arq:dev", "brighter:ary:dev")
"""Where the texts past SemEval's 1,471 dev texts come from, in order (English, then Arabic dialects)."""


def cpu_name() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def matmul_gflops(hidden: int = 384, inter: int = 1536, tokens: int = 1536, seconds: float = 4.0) -> float:
    """Achieved fp32 GFLOP/s over one encoder layer's matmul shapes (the best of a few rounds)."""
    x, xi = torch.randn(tokens, hidden), torch.randn(tokens, inter)
    w, up, down = torch.randn(hidden, hidden), torch.randn(hidden, inter), torch.randn(inter, hidden)
    flops = 2 * tokens * (4 * hidden * hidden + 2 * hidden * inter)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        for _ in range(4):
            torch.matmul(x, w)
        torch.matmul(x, up), torch.matmul(xi, down)
        best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def encoder_flops(model, word_lists, batch_size: int) -> dict[str, float]:
    """FLOPs per encoder over the padded length-ordered batches the model runs these texts in."""
    out = {}
    for name, we, enc in zip(model.names, model.word_encoders, model.encoders):
        c = enc.config
        h, inter, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
        encoded = we.encode(word_lists)
        total = 0.0
        for idx in length_batches([len(w) for w in word_lists], batch_size):
            b, s = len(idx), max(len(encoded[i][0]) for i in idx)
            total += layers * (2 * b * s * (4 * h * h + 2 * h * inter) + 2 * 2 * b * s * s * h)
        out[name] = total
    return out


def tokenise_seconds(model, word_lists, batch_size: int) -> dict[str, float]:
    """Seconds each encoder's tokenising and padding of these texts takes, in the model's batches
    (what sharing one tokenisation between two encoders of one tokenizer could save)."""
    out = {}
    for name, we in zip(model.names, model.word_encoders):
        start = time.perf_counter()
        for idx in length_batches([len(w) for w in word_lists], batch_size):
            we.pad(we.encode([word_lists[i] for i in idx]))
        out[name] = round(time.perf_counter() - start, 2)
    return out


def timed(fn, texts):
    fn(texts[:32])  # warm-up: first calls allocate
    start = time.perf_counter()
    probs = fn(texts)
    return probs, time.perf_counter() - start


def dev_f1(predictor: Predictor, probs: np.ndarray, sets: dict[str, tuple[slice, object]]) -> dict[str, float]:
    return {name: round(compute_metrics(ds.labels, probs[part], predictor.thresholds,
                                        label_mask=ds.label_mask)["macro_f1"], 4) for name, (part, ds) in sets.items()}


def candidates(model_dir: str, texts: list[str], reference: np.ndarray, threads: int) -> dict[str, dict]:
    """Each candidate: the whole model on ``texts``, texts/s and deviation from ``reference``."""
    from onnxruntime.quantization import (  # only for this comparison
        QuantType,
        quantize_dynamic,
    )

    def run(name, prepare):
        predictor = Predictor(model_dir, device="cpu")
        prepare(predictor.model)
        probs, seconds = timed(predictor.model.predict_proba, texts)
        diff = np.abs(probs - reference)
        results[name] = {"texts_per_s": round(len(texts) / seconds, 2), "max_abs_diff": float(diff.max()),
                         "mean_abs_diff": float(diff.mean())}
        print(f"  {name:<28} {results[name]['texts_per_s']:6.2f} texts/s  max|dp| {diff.max():.2e}  mean {diff.mean():.2e}")

    def torch_int8(model):
        for enc in model.encoders:
            replace_module(model, enc, torch.ao.quantization.quantize_dynamic(enc, {nn.Linear}, dtype=torch.qint8))

    def ort(n_threads, int8=False):
        def swap(model):
            for enc in model.encoders:
                path = export_encoder(enc, cache_dir() / "onnx")
                if int8:
                    q = path.with_name(path.stem + "-int8.onnx")
                    if not q.exists():
                        quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8, per_channel=True)
                    path = q
                replace_module(model, enc, OrtEncoder(enc.get_input_embeddings(), ort_session(path, n_threads), enc.config))
        return swap

    results: dict[str, dict] = {}
    run("torch fp32", lambda m: None)
    torch.set_num_threads(1)
    run("torch fp32, 1 thread", lambda m: None)
    torch.set_num_threads(threads)
    run("torch int8 (dynamic)", torch_int8)
    run(f"onnxruntime fp32, {threads} threads", ort(threads))
    run("onnxruntime fp32, 1 thread", ort(1))
    run("onnxruntime int8 (dynamic)", ort(threads, int8=True))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a bundle with fast-path thresholds (emoscope tune-fast)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=0, help="compare the candidates on this many texts")
    parser.add_argument("--output")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ar, en = (load_dataset(f"semeval2018:{lang}:dev") for lang in ("ar", "en"))
    texts, parts = list(ar.texts) + list(en.texts), [f"{len(ar)} semeval2018:ar:dev", f"{len(en)} semeval2018:en:dev"]
    for spec in FILL:
        more = list(load_dataset(spec).texts)[: max(0, args.n - len(texts))]
        if more:
            texts += more
            parts.append(f"{len(more)} {spec}")
    if len(texts) < args.n:  # the rest: SemEval dev texts again, from the first
        parts.append(f"{args.n - len(texts)} repeated from the start")
        texts += (texts * (args.n // len(texts) + 1))[: args.n - len(texts)]
    report = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "load_before": load(),
              "texts": " + ".join(parts)}
    print(report["cpu"], "|", report["load_before"], "|", report["texts"])
    fp32, fast = Predictor(args.model, device="cpu"), Predictor(args.model, fast=True)
    sets = {}
    for name, ds, part in (("semeval2018:ar:dev", ar, slice(0, len(ar))),
                           ("semeval2018:en:dev", en, slice(len(ar), len(ar) + len(en)))):
        if sorted(ds.label_names) == sorted(fp32.labels) and part.stop <= len(texts):
            sets[name] = (part, align_labels(ds, fp32.labels))
        else:
            print(f"no macro-F1 on {name}: other labels than this bundle's, or cut by --n")
    rates = [matmul_gflops()]
    words = [fp32.model.word_encoders[0].words(t) for t in texts]
    flops = encoder_flops(fp32.model, words, fp32.model.runtime.batch_size)
    report["encoder_gflop_per_text"] = {k: round(v / len(texts) / 1e9, 3) for k, v in flops.items()}
    report["tokenise_seconds"] = tokenise_seconds(fp32.model, words, fp32.model.runtime.batch_size)
    p32, t32 = timed(fp32.predict_proba, texts)
    rates.append(matmul_gflops())
    pfast, tfast = timed(fast.predict_proba, texts)
    rates.append(matmul_gflops())  # before, between and after the two paths: the machine is shared
    report["matmul_gflops_runs"] = [round(r, 1) for r in rates]
    report["matmul_gflops"] = round(float(np.median(rates)), 1)
    report["flop_limit_texts_per_s"] = round(len(texts) / (sum(flops.values()) / 1e9 / report["matmul_gflops"]), 2)
    print(f"matmul {report['matmul_gflops_runs']} GFLOP/s (median {report['matmul_gflops']}); encoders "
          f"{report['encoder_gflop_per_text']} GFLOP/text -> limit {report['flop_limit_texts_per_s']} texts/s")
    diff = np.abs(pfast - p32)
    report.update({
        "fp32_texts_per_s": round(len(texts) / t32, 2), "fast_texts_per_s": round(len(texts) / tfast, 2),
        "fp32_seconds": round(t32, 1), "fast_seconds": round(tfast, 1),
        "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
        "macro_f1_fp32": dev_f1(fp32, p32, sets), "macro_f1_fast": dev_f1(fast, pfast, sets),
        "fast_record": fast.manifest.path_thresholds["onnxruntime"].__dict__})
    report["fast_vs_limit"] = round(report["flop_limit_texts_per_s"] / report["fast_texts_per_s"], 2)
    print(f"fp32 {report['fp32_texts_per_s']} texts/s, fast {report['fast_texts_per_s']} texts/s "
          f"({report['fast_vs_limit']}x from the limit); max|dp| {diff.max():.2e} mean {diff.mean():.2e}")
    print("macro-F1 fp32", report["macro_f1_fp32"], "fast", report["macro_f1_fast"])
    if args.candidates:
        pick = np.linspace(0, len(texts) - 1, min(args.candidates, len(texts))).astype(int)  # ar and en alike
        print(f"candidates on {len(pick)} of the texts, evenly spaced:")
        report["candidates"] = candidates(args.model, [texts[i] for i in pick], p32[pick], args.threads)
    report["load_after"] = load()
    print(report["load_after"])
    if args.output:
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
