"""Which of EmbeddingGemma's layers carries the most emotion? Mean-pools every layer's hidden states
over each text's tokens (the classification prompt prepended, max_length 128) and fits one logistic
regression per label on every even layer (C = 0.01 and 0.1, thresholds tuned on validation), on a
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
from sklearn.linear_model import LogisticRegression

from emoscope.config import load_config
from emoscope.data import load_training_data
from emoscope.encoders import load_encoder
from emoscope.encoders.gemma import CLASSIFICATION_PROMPT
from emoscope.metrics import compute_metrics
from emoscope.thresholds import choose_thresholds

SPLITS = ("train", "validation", "eval")


def pooled_layers(tokenizer, model, texts: list[str], batch_size: int = 16) -> np.ndarray:
    """texts x layers x hidden: each layer's hidden states mean-pooled over the text's tokens."""
    out, t0 = [], time.perf_counter()
    for i in range(0, len(texts), batch_size):
        batch = [f"{CLASSIFICATION_PROMPT} {t}" for t in texts[i:i + batch_size]]
        enc = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            states = model(**enc, output_hidden_states=True).hidden_states
        mask = enc["attention_mask"].unsqueeze(-1).float()
        out.append(torch.stack([(h * mask).sum(1) / mask.sum(1) for h in states], 1).numpy())
    print(f"{len(texts)} texts: {time.perf_counter() - t0:.0f} s", flush=True)
    return np.concatenate(out)


def per_label_logits(X: np.ndarray, y: np.ndarray, mask: np.ndarray | None, scored: list[np.ndarray],
                     C: float) -> list[np.ndarray]:
    """One balanced logistic regression per label (on the texts annotated for it); logits of ``scored``."""
    cols: list[list[np.ndarray]] = [[] for _ in scored]
    for j in range(y.shape[1]):
        rows = np.arange(len(X)) if mask is None else np.flatnonzero(mask[:, j])
        lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(X[rows], y[rows, j])
        for k, Z in enumerate(scored):
            cols[k].append(lr.decision_function(Z))
    return [np.stack(c, 1) for c in cols]


def main() -> None:
    config, out = load_config(sys.argv[1]), sys.argv[2]
    data = load_training_data(config)
    tokenizer, model = load_encoder("embeddinggemma-300m")
    model.eval()
    splits = {s: getattr(data, s) for s in SPLITS}
    X = {s: pooled_layers(tokenizer, model, list(d.texts)) for s, d in splits.items()}
    np.savez(out, **X)
    val, dev = splits["validation"], splits["eval"]
    for layer in range(0, X["train"].shape[1], 2):
        Xtr, Xv, Xd = (X[s][:, layer] for s in SPLITS)
        mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
        Xtr, Xv, Xd = (Xtr - mu) / sd, (Xv - mu) / sd, (Xd - mu) / sd
        for C in (0.01, 0.1):
            pv, pd = (1 / (1 + np.exp(-z)) for z in per_label_logits(Xtr, data.train.labels, data.train.label_mask,
                                                                     [Xv, Xd], C))
            th = choose_thresholds(config.thresholds, val.labels, pv, val.label_mask)
            v = compute_metrics(val.labels, pv, th, label_mask=val.label_mask)["macro_f1"]
            d = compute_metrics(dev.labels, pd, th, label_mask=dev.label_mask)["macro_f1"]
            print(f"layer {layer:2d} C={C:<5} val {v:.3f} dev {d:.3f}", flush=True)


if __name__ == "__main__":
    main()
