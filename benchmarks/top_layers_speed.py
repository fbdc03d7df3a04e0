"""What ``encoder.train_layers`` saves: one training pass of an encoder classifier fine-tuned whole
(word embeddings frozen, as the recipes fine-tune me5) against the same pass with only the top N
layers trained from the stored frozen-layer states, and a stage-2 read of the same texts (word
vectors) by a full forward against one from the stored states; same batches, alternating, one
run; plus the one-off cost of storing the states.

    EMOSCOPE_DATA_ROOT=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python benchmarks/top_layers_speed.py \
        --source embeddinggemma-300m --data brighter:arq:train --layers 2 [--output F.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emoscope.config import DataConfig, EncoderConfig, LossConfig, RunConfig, TrainingConfig
from emoscope.data import load_dataset
from emoscope.losses import loss_from_config
from emoscope.training.classifier import ClassifierBatchLoss, build_classifier
from emoscope.training.loop import encoder_optimizer
from emoscope.training.stack.embeddings import EmbeddingCache, embed_words
from emoscope.training.top_layers import LowerLayerStates

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="embeddinggemma-300m")
    ap.add_argument("--data", default="brighter:arq:train")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--texts", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    ds = load_dataset(args.data)
    rows = np.arange(min(args.texts, len(ds)))
    config = RunConfig(name="bench", data=DataConfig(train=args.data), training=TrainingConfig(lr=5e-5),
                       encoders=(EncoderConfig(source=args.source, freeze_embeddings=True),))
    whole = config.encoder
    top = dataclasses.replace(whole, freeze_embeddings=False, train_layers=args.layers)
    device, log = torch.device("cpu"), (lambda _: None)
    models = {"whole": build_classifier(config, whole, ds.label_names, device, log),
              "top": build_classifier(config, top, ds.label_names, device, log)}
    top_model = models["top"]
    words = [ds.texts[i].split() for i in rows]  # one tokenisation for the training passes and the reads
    encoded = top_model.word_encoder.encode(words)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lower = LowerLayerStates(top_model.encoder, top_model.word_encoder, device, args.layers, encoded,
                                 EmbeddingCache(tmp))
    store_s = time.perf_counter() - started
    sub = ds.subset(rows)
    loss_fn = loss_from_config(LossConfig(name="bce"), sub.labels, None)
    steps = {name: (ClassifierBatchLoss(m, encoded, sub, loss_fn, lower=lower if name == "top" else None),
                    encoder_optimizer(m, config.training)) for name, m in models.items()}
    batches = [np.arange(i, min(i + args.batch, len(rows))) for i in range(0, len(rows), args.batch)]

    def step(name: str) -> float:
        batch_loss, optimizer = steps[name]
        models[name].train()
        t0 = time.perf_counter()
        for idx in batches:
            loss = batch_loss(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - t0

    def read(name: str) -> float:
        stored = (lambda _encoded: lower) if name == "read-top" else None
        t0 = time.perf_counter()
        with torch.inference_mode():
            embed_words(top_model.encoder, top_model.word_encoder, words, args.batch, device, stored_states=stored)
        return time.perf_counter() - t0

    runs = {"whole": lambda: step("whole"), "top": lambda: step("top"),
            "read-whole": lambda: read("read-whole"), "read-top": lambda: read("read-top")}
    for run in runs.values():  # warm-up
        run()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"machine": machine(), "source": args.source, "layers_trained": args.layers, "texts": len(rows),
              "batch": args.batch, "threads": torch.get_num_threads(),
              "epoch_of_texts_s": {"whole (embeddings frozen)": med["whole"], f"top {args.layers} layers": med["top"]},
              "speedup": med["whole"] / med["top"],
              "stage2_read_s": {"full forward": med["read-whole"], "from the stored states": med["read-top"]},
              "stage2_speedup": med["read-whole"] / med["read-top"], "store_states_s": store_s,
              "store_states_per_text_s": store_s / len(rows)}
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
