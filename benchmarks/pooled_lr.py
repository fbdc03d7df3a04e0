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


def main() -> None:
    cfg = load_config(sys.argv[1])
    work = Path(sys.argv[2])
    data = load_training_data(cfg)
    st = prepare_stack(cfg, data, device=torch.device("cpu"), work=work, progress=False, log=lambda m: None)
    def pooled(rr):
        return np.stack([r.mean(0) for r in rr.rows(range(len(rr)))])
    ytr, mtr = data.train.labels, data.train.label_mask
    yv, yd = data.validation.labels, data.eval.labels
    def fit_pred(X, y, m, Xs, C):
        out = []
        for j in range(y.shape[1]):
            rows = np.arange(len(X)) if m is None else np.flatnonzero(m[:, j])
            lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(X[rows], y[rows, j])
            out.append([lr.decision_function(Z) for Z in Xs])
        return [np.stack([o[i] for o in out], 1) for i in range(len(Xs))]
    def score(pv, pd):
        sig = lambda z: 1/(1+np.exp(-z))
        th = choose_thresholds(cfg.thresholds, yv, sig(pv), data.validation.label_mask)
        return (compute_metrics(yv, sig(pv), th, label_mask=data.validation.label_mask)["macro_f1"],
                compute_metrics(yd, sig(pd), th, label_mask=data.eval.label_mask)["macro_f1"])
    feats = {n: [pooled(st.select([n], s)) for s in ("train", "validation", "eval")] for n in st.encoders}
    feats["concat"] = [np.concatenate([feats[n][i] for n in st.encoders], 1) for i in range(3)]
    for name, (Xtr, Xv, Xd) in feats.items():
        mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
        Xtr, Xv, Xd = (Xtr-mu)/sd, (Xv-mu)/sd, (Xd-mu)/sd
        for C in (0.01, 0.1, 1.0):
            pv, pd = fit_pred(Xtr, ytr, mtr, [Xv, Xd], C)
            v, d = score(pv, pd)
            print(f"{name:14s} C={C:<5} val {v:.3f} dev {d:.3f}", flush=True)
    for b, tb in st.text_bases.items():
        v, d = score(tb.logits["validation"].flat, tb.logits["eval"].flat)
        print(f"{b} base: val {v:.3f} dev {d:.3f}")


if __name__ == "__main__":
    main()
