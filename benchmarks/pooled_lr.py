"""Per-label logistic regression on each encoder's mean-pooled word vectors (and on all of them
concatenated), beside the TF-IDF base, from a stacked recipe's cached stage-2 inputs: would such a
model make a useful base? C in {0.01, 0.1, 1}: read the validation column to choose, dev is only
reported. Prints one line per encoder and C.

    EMOSCOPE_DATA_ROOT=../shared/datasets .venv/bin/python benchmarks/pooled_lr.py \
        training/configs/brighter-ary-union-gemma-frozen-tfidf-stack.toml WORK_DIR
"""
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from emoscope.config import load_config
from emoscope.data import load_training_data
from emoscope.metrics import compute_metrics
from emoscope.thresholds import choose_thresholds
from emoscope.training.stack.stage2 import prepare_stack


def per_label_logits(X: np.ndarray, y: np.ndarray, mask: np.ndarray | None, scored: list[np.ndarray],
                     C: float) -> list[np.ndarray]:
    """One balanced logistic regression per label (on the texts annotated for it); logits of ``scored``."""
    out = []
    for j in range(y.shape[1]):
        rows = np.arange(len(X)) if mask is None else np.flatnonzero(mask[:, j])
        lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(X[rows], y[rows, j])
        out.append([lr.decision_function(Z) for Z in scored])
    return [np.stack([o[i] for o in out], 1) for i in range(len(scored))]


def standardized(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``train`` and ``others`` scaled by ``train``'s per-feature mean and std."""
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [(x - mu) / sd for x in (train, *others)]


def val_dev_f1(config, data, logits_val: np.ndarray, logits_dev: np.ndarray) -> tuple[float, float]:
    """Macro-F1 on validation and on the eval split, at thresholds tuned on validation."""
    val, dev = data.validation, data.eval
    pv, pd = 1 / (1 + np.exp(-logits_val)), 1 / (1 + np.exp(-logits_dev))
    th = choose_thresholds(config.thresholds, val.labels, pv, val.label_mask)
    return (compute_metrics(val.labels, pv, th, label_mask=val.label_mask)["macro_f1"],
            compute_metrics(dev.labels, pd, th, label_mask=dev.label_mask)["macro_f1"])


def main() -> None:
    cfg = load_config(sys.argv[1])
    work = Path(sys.argv[2])
    data = load_training_data(cfg)
    st = prepare_stack(cfg, data, device=torch.device("cpu"), work=work, progress=False, log=lambda m: None)
    def pooled(rr):
        return np.stack([r.mean(0) for r in rr.rows(range(len(rr)))])
    feats = {n: [pooled(st.select([n], s)) for s in ("train", "validation", "eval")] for n in st.encoders}
    feats["concat"] = [np.concatenate([feats[n][i] for n in st.encoders], 1) for i in range(3)]
    for name, (Xtr, Xv, Xd) in feats.items():
        Xtr, Xv, Xd = standardized(Xtr, Xv, Xd)
        for C in (0.01, 0.1, 1.0):
            pv, pd = per_label_logits(Xtr, data.train.labels, data.train.label_mask, [Xv, Xd], C)
            v, d = val_dev_f1(cfg, data, pv, pd)
            print(f"{name:14s} C={C:<5} val {v:.3f} dev {d:.3f}", flush=True)
    for b, tb in st.text_bases.items():
        v, d = val_dev_f1(cfg, data, tb.logits["validation"].flat, tb.logits["eval"].flat)
        print(f"{b} base: val {v:.3f} dev {d:.3f}")


if __name__ == "__main__":
    main()
