"""Which of EmbeddingGemma's layers carries the most emotion? Mean-pools every layer's hidden states
over each text's tokens (the classification prompt prepended, max_length 128) and fits one logistic
regression per label on every even layer (C = 0.001, 0.01 and 0.1, thresholds tuned on validation), on a
recipe's train / validation / eval splits. The stacked recipes read the last layer; choose on the
validation column, dev is only reported. Saves the pooled vectors (train, validation, eval; texts x
layers x 768) to OUT.npz.

    EMOSCOPE_DATA_ROOT=../shared/datasets .venv/bin/python benchmarks/gemma_layers.py \
        training/configs/brighter-arq-gemma-stack.toml /tmp/arq_layers.npz
"""
import sys
import time

import numpy as np
import torch

from emoscope.config import load_config
from emoscope.data import load_training_data
from emoscope.encoders import load_encoder, text_prefix
from emoscope.models.classifier import pool_tokens
from pooled_lr import per_label_logits, standardized, val_dev_f1  # benchmarks/pooled_lr.py, beside this script

SOURCE = "embeddinggemma-300m"
SPLITS = ("train", "validation", "eval")


def pooled_layers(tokenizer, model, texts: list[str], batch_size: int = 16) -> np.ndarray:
    """texts x layers x hidden: each layer's hidden states mean-pooled over the text's tokens."""
    out, t0, prefix = [], time.perf_counter(), text_prefix(SOURCE)
    for i in range(0, len(texts), batch_size):
        batch = [f"{prefix} {t}" for t in texts[i:i + batch_size]]
        enc = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            states = model(**enc, output_hidden_states=True).hidden_states
        out.append(torch.stack([pool_tokens(h, enc["attention_mask"], "mean") for h in states], 1).numpy())
    print(f"{len(texts)} texts: {time.perf_counter() - t0:.0f} s", flush=True)
    return np.concatenate(out)


def main() -> None:
    config, out = load_config(sys.argv[1]), sys.argv[2]
    data = load_training_data(config)
    tokenizer, model = load_encoder(SOURCE)
    model.eval()
    X = {s: pooled_layers(tokenizer, model, list(getattr(data, s).texts)) for s in SPLITS}
    np.savez(out, **X)
    for layer in range(0, X["train"].shape[1], 2):
        Xtr, Xv, Xd = standardized(*(X[s][:, layer] for s in SPLITS))
        for C in (0.001, 0.01, 0.1):  # eng's 2,353 training texts prefer the smallest
            pv, pd = per_label_logits(Xtr, data.train.labels, data.train.label_mask, [Xv, Xd], C)
            v, d = val_dev_f1(config, data, pv, pd)
            print(f"layer {layer:2d} C={C:<5} val {v:.3f} dev {d:.3f}", flush=True)


if __name__ == "__main__":
    main()
