"""Prediction speed of ``Predictor`` against a plain ``transformers`` forward pass, in one run.

Both sides get the same texts. The reference is what a user would write by hand with the
same fine-tuned encoder: ``tokenizer(texts, padding=True, truncation=True)`` (with E5's
``query:`` prefix for E5 models, as their users write it) then ``model(**batch)`` under
``inference_mode``. Predictor adds text normalisation, the shared
word segmentation, the pooled head and the sigmoid. Timings alternate between the two sides
(this machine is noisy) and the medians are compared as a ratio.

    .venv/bin/python benchmarks/predict_speed.py --model models/brighter-eng-minilm --data brighter:eng:dev
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from emoscope.data import load_dataset
from emoscope.predict import Predictor
from timing import compare  # benchmarks/timing.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="brighter:eng:dev")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texts = load_dataset(args.data).texts[: args.batch]
    predictor = Predictor(args.model, device="cpu", batch_size=args.batch)
    encoder_dir = Path(args.model) / predictor.manifest.model.path / "encoder"
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    kwargs = {"add_pooling_layer": False} if predictor.model.encoders[0].config.model_type == "bert" else {}
    plain = AutoModel.from_pretrained(encoder_dir, **kwargs).eval()
    word_encoder = predictor.model.word_encoders[0]
    max_length = word_encoder.max_length
    # A hand-written call to an E5 model adds its "query: " prefix too; without it the
    # reference would read fewer tokens than the model was trained to see.
    prefix = word_encoder.prefix

    def reference(batch: list[str]) -> None:
        with torch.inference_mode():
            enc = tokenizer([f"{prefix} {t}" if prefix else t for t in batch], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            plain(**enc)

    cases = {"one text": texts[:1], f"batch of {len(texts)}": texts}
    results = compare(cases, reference, predictor.predict_proba, args.repeats, ("plain forward", "Predictor"))
    if args.output:
        Path(args.output).write_text(json.dumps({"model": args.model, "data": args.data, "threads": args.threads,
                                                 "repeats": args.repeats, "results": results}, indent=1))


if __name__ == "__main__":
    main()
