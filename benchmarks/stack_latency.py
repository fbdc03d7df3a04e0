"""Prediction latency of a stacked bundle against the sum of its encoders' plain forward passes.

The reference is what the stack cannot avoid: each base encoder's own ``transformers`` forward
pass over the same texts, written by hand (``tokenizer(texts, padding=True, truncation=True)``
with the source's prefix, then ``model(**batch)`` under ``inference_mode``), summed over the
encoders. ``Predictor.predict_proba`` adds normalisation, the shared word segmentation, the
sub-word → word pooling, the Bi-LSTM meta-learner and the sigmoid. Both sides alternate
within one run (this machine is noisy) and the medians are compared as a ratio.

    .venv/bin/python benchmarks/stack_latency.py --model benchmarks/results/quality/bundles/brighter-eng-stack \
        --data brighter:eng:dev --output benchmarks/results/stack-latency-eng.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from emoscope.data import load_dataset
from emoscope.predict import Predictor
from timing import compare, machine  # benchmarks/timing.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a stacked bundle")
    parser.add_argument("--data", default="brighter:eng:dev")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texts = load_dataset(args.data).texts[: args.batch]
    predictor = Predictor(args.model, device="cpu", batch_size=args.batch)
    spec = predictor.manifest.model
    if spec.kind != "stacked":
        raise SystemExit(f"{args.model} is not a stacked bundle")
    root = Path(args.model) / spec.path
    plain = []
    for entry in spec.encoders:
        folder = root / entry.path
        kwargs = {"add_pooling_layer": False} if entry.model_type == "bert" else {}
        plain.append((AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder, **kwargs).eval(),
                      entry.text_prefix, entry.max_length))

    def reference(batch: list[str]) -> None:
        with torch.inference_mode():
            for tokenizer, model, prefix, max_length in plain:
                enc = tokenizer([f"{prefix} {t}" if prefix else t for t in batch], padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt")
                model(**enc)

    cases = {"one text": texts[:1], f"batch of {len(texts)}": texts}
    before = machine()
    print(f"{before['cpu']}, load average {before['load'][0]:.2f} at the start", flush=True)
    results = compare(cases, reference, predictor.predict_proba, args.repeats, (f"sum of {len(plain)} plain forwards", "stacked Predictor"))
    if args.output:
        Path(args.output).write_text(json.dumps({"model": args.model, "encoders": [e.name for e in spec.encoders],
                                                 "data": args.data, "threads": args.threads, "repeats": args.repeats,
                                                 "results": results, "machine_before": before,
                                                 "machine_after": machine()}, indent=1))


if __name__ == "__main__":
    main()
