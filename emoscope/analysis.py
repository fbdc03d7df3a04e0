"""Analysis of a model's predictions on labelled data: PR curves, calibration, error lists.

Pure numpy/pandas; the app's Thresholds, Evaluate and Errors pages are thin views over these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from emoscope.metrics import check_label_arrays


def precision_recall_curve(y: np.ndarray, p: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Precision and recall of one label at every distinct score used as threshold (score >= t).

    ``y``, ``p`` are 1-D; rows with ``mask`` False are left out. Returns ``thresholds``
    (descending), ``precision`` and ``recall`` arrays of the same length.
    """
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=float)
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
        y, p = y[keep], p[keep]
    order = np.argsort(-p, kind="stable")
    y, p = y[order], p[order]
    tp = np.cumsum(y)
    predicted = np.arange(1, len(y) + 1)
    last = np.r_[np.flatnonzero(np.diff(p) != 0), len(p) - 1] if len(p) else np.array([], dtype=int)
    positives = max(int(y.sum()), 1)
    return {"thresholds": p[last], "precision": tp[last] / predicted[last], "recall": tp[last] / positives}


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10, mask: np.ndarray | None = None) -> pd.DataFrame:
    """Calibration of one label: per probability bin, mean predicted probability, observed rate, count."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
        y, p = y[keep], p[keep]
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            rows.append({"bin": f"{edges[b]:.1f}–{edges[b + 1]:.1f}", "predicted": float(p[sel].mean()),
                         "observed": float(y[sel].mean()), "count": int(sel.sum())})
    return pd.DataFrame(rows, columns=["bin", "predicted", "observed", "count"])


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10, mask: np.ndarray | None = None) -> float:
    table = reliability(y, p, bins, mask)
    if table.empty:
        return float("nan")
    return float((table["count"] * (table["predicted"] - table["observed"]).abs()).sum() / table["count"].sum())


def error_table(texts: Sequence[str], labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray,
                label_names: Sequence[str], label: str, kind: str, query: str = "",
                mask: np.ndarray | None = None, ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The false positives (``kind="fp"``) or false negatives (``"fn"``) of one label.

    Sorted by confidence: false positives by the label's probability, highest first; false
    negatives by lowest first (the most confident misses on top). ``query`` filters texts
    (case-insensitive substring). Each row has the text, the label's probability, and the
    gold and predicted label lists.
    """
    y, p, m = check_label_arrays(labels, probs, mask)
    if kind not in ("fp", "fn"):
        raise ValueError(f"kind must be 'fp' or 'fn', got {kind!r}")
    j = list(label_names).index(label)
    predicted = p >= np.asarray(thresholds, dtype=float)[None, :]
    wrong = (~y[:, j] & predicted[:, j]) if kind == "fp" else (y[:, j] & ~predicted[:, j])
    rows = np.flatnonzero(wrong & m[:, j])
    if query:
        q = query.casefold()
        rows = np.asarray([i for i in rows if q in texts[i].casefold()], dtype=int)
    order = np.argsort(-p[rows, j] if kind == "fp" else p[rows, j], kind="stable")
    rows = rows[order] if len(rows) else rows
    names = list(label_names)
    return pd.DataFrame({
        "index": rows.astype(int),
        "id": [ids[i] if ids is not None else str(i) for i in rows],
        "text": [texts[i] for i in rows],
        "probability": [float(p[i, j]) for i in rows],
        "gold": [", ".join(n for n, on in zip(names, y[i]) if on) for i in rows],
        "predicted": [", ".join(n for n, on in zip(names, predicted[i]) if on) for i in rows],
    })
