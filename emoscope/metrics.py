"""Multi-label evaluation: P/R/F1 averages, Jaccard, Hamming, ROC-AUC, per-class report, confusions.

One metrics module for training (early stopping), the CLI and the app. The app recomputes
everything from cached validation probabilities on every threshold-slider move, so the
computation is plain vectorised numpy (a 1,000 x 11 matrix takes about 2 ms on one core), not
one scikit-learn call per metric; the tests check it against scikit-learn.

Conventions:

* A ratio with a zero denominator is 0.0 (scikit-learn's ``zero_division=0``): a class never
  predicted has precision 0, a class with no positives has recall 0.
* ``jaccard`` is the SemEval-2018 E-c score: the mean over examples of
  |gold ∩ predicted| / |gold ∪ predicted|, where an example with no gold label and no predicted
  label scores 1 (a correct "no emotion"). The ``samples_*`` P/R/F1 keep scikit-learn's convention
  (such an example scores 0).
* ``label_mask`` (True = annotated) removes unannotated cells from every count. Macro averages run
  over classes with at least one annotated cell; samples averages over examples with at least one.
* Undefined values (ROC-AUC of a class without both positives and negatives, any score over zero
  annotated cells) are ``None`` in the returned dict, so it is JSON-serialisable as it is.
"""

from __future__ import annotations

import numpy as np

from emoscope.errors import ConfigError

__all__ = [
    "GREATER_IS_BETTER",
    "PRIMARY_METRIC",
    "compute_metrics",
    "format_report",
    "label_cooccurrence",
    "multilabel_confusion",
]

#: The key of :func:`compute_metrics` that model selection, early stopping and threshold
#: comparisons use. Macro-F1 weighs every emotion equally, so rare emotions count.
PRIMARY_METRIC = "macro_f1"
#: Whether a larger :data:`PRIMARY_METRIC` is better (it is).
GREATER_IS_BETTER = True

_AVERAGES = ("micro", "macro", "weighted", "samples")


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: float | np.ndarray = 0.5,
    label_names: list[str] | None = None,
    label_mask: np.ndarray | None = None,
) -> dict:
    """Score probabilities ``probs [n, L]`` against gold labels ``y_true [n, L]`` (0/1).

    A label is predicted when ``prob >= threshold`` (one threshold, or one per class).

    Returns a JSON-serialisable dict: ``{micro,macro,weighted,samples}_{precision,recall,f1}``,
    ``jaccard``, ``hamming_loss``, ``roc_auc_macro``, ``n_samples``, ``per_class``
    (``{label: {precision, recall, f1, support, roc_auc, threshold, tp, fp, fn, tn}}``) and
    ``confusion`` (``{label: [[tn, fp], [fn, tp]]}``). See the module docstring for conventions.
    """
    y, p, m = check_label_arrays(y_true, probs, label_mask)
    n, n_labels = y.shape
    names = _label_names(label_names, n_labels)
    thr = validate_thresholds(thresholds, n_labels)
    pred = p >= thr

    cm = multilabel_confusion(y, pred, label_mask=m)
    tn, fp, fn, tp = (cm[:, i, k].astype(np.float64) for i, k in ((0, 0), (0, 1), (1, 0), (1, 1)))
    support = tp + fn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    auc = _roc_auc_per_class(y, p, m)

    out = _class_averages(tp, fp, fn, support, precision, recall, f1, scored=m.any(axis=0))
    out.update(_example_averages(y, pred, m))
    out["roc_auc_macro"] = _mean(auc[~np.isnan(auc)])
    out["n_samples"] = int(n)

    out["per_class"] = {
        name: {
            "precision": precision[j],
            "recall": recall[j],
            "f1": f1[j],
            "support": int(support[j]),
            "roc_auc": auc[j],
            "threshold": thr[j],
            "tp": int(tp[j]),
            "fp": int(fp[j]),
            "fn": int(fn[j]),
            "tn": int(tn[j]),
        }
        for j, name in enumerate(names)
    }
    out["confusion"] = {name: cm[j].tolist() for j, name in enumerate(names)}
    return _to_json_values(out)



def _class_averages(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, support: np.ndarray, precision: np.ndarray,
                    recall: np.ndarray, f1: np.ndarray, scored: np.ndarray) -> dict:
    """Micro, macro (over classes with an annotated cell) and support-weighted P/R/F1."""
    out: dict = {
        "micro_precision": _ratio(tp.sum(), tp.sum() + fp.sum()),
        "micro_recall": _ratio(tp.sum(), tp.sum() + fn.sum()),
        "micro_f1": _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()),
        "macro_precision": _mean(precision[scored]),
        "macro_recall": _mean(recall[scored]),
        "macro_f1": _mean(f1[scored]),
    }
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"weighted_{name}"] = _ratio((values * support).sum(), support.sum())
    return out


def _example_averages(y: np.ndarray, pred: np.ndarray, m: np.ndarray) -> dict:
    """Samples-averaged P/R/F1, Jaccard (empty-empty = 1) and Hamming loss over annotated cells."""
    gold, hit = y & m, pred & m
    row_tp = (gold & hit).sum(axis=1)
    row_true, row_pred = gold.sum(axis=1), hit.sum(axis=1)
    rows = m.any(axis=1)
    union = row_true + row_pred - row_tp
    return {
        "samples_precision": _mean(_ratio(row_tp, row_pred)[rows]),
        "samples_recall": _mean(_ratio(row_tp, row_true)[rows]),
        "samples_f1": _mean(_ratio(2 * row_tp, row_true + row_pred)[rows]),
        "jaccard": _mean(np.where(union == 0, 1.0, _ratio(row_tp, union))[rows]),
        "hamming_loss": _mean_or_nan(((y != pred) & m).sum(), m.sum()),
    }

def multilabel_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, label_mask: np.ndarray | None = None
) -> np.ndarray:
    """Per-class 2x2 confusion matrices ``[L, 2, 2]`` as ``[[tn, fp], [fn, tp]]`` (scikit-learn's layout).

    Cells where ``label_mask`` is False are not counted.
    """
    y, pred, m = check_label_arrays(y_true, y_pred, label_mask)
    if not np.isin(pred, (0, 1)).all():
        raise ValueError("y_pred must contain only 0 and 1; apply thresholds to probabilities first")
    pred = pred.astype(bool)
    tp = (y & pred & m).sum(axis=0)
    fp = (~y & pred & m).sum(axis=0)
    fn = (y & ~pred & m).sum(axis=0)
    tn = (~y & ~pred & m).sum(axis=0)
    return np.stack([np.stack([tn, fp], axis=-1), np.stack([fn, tp], axis=-1)], axis=1).astype(np.int64)


def label_cooccurrence(Y: np.ndarray, normalize: bool = False) -> np.ndarray:
    """How often labels occur together in ``Y [n, L]`` (0/1): ``C[i, j]`` = examples with both i and j.

    The diagonal holds each label's count. With ``normalize=True``, row i is divided by the
    count of label i, giving P(j | i); a label that never occurs has a row of zeros.
    """
    y = np.asarray(Y)
    if y.ndim != 2 or not np.isin(y, (0, 1)).all():
        raise ValueError(f"Y must be a 2-D 0/1 matrix, got shape {y.shape}")
    y = y.astype(np.int64)
    counts = y.T @ y
    if not normalize:
        return counts
    diag = np.diag(counts).astype(np.float64)
    return _ratio(counts.astype(np.float64), diag[:, None])


def format_report(metrics: dict) -> str:
    """Render :func:`compute_metrics` output as a plain-text table: headline metrics, then one row per class."""
    lines = [f"examples: {metrics['n_samples']}", ""]
    lines.append(f"{'average':<10}{'precision':>10}{'recall':>10}{'f1':>10}")
    for avg in _AVERAGES:
        cells = "".join(_cell(metrics[f"{avg}_{k}"], 10) for k in ("precision", "recall", "f1"))
        lines.append(f"{avg:<10}{cells}")
    lines.append("")
    lines.append(
        f"jaccard {_cell(metrics['jaccard'], 0)}   hamming_loss {_cell(metrics['hamming_loss'], 0)}"
        f"   roc_auc_macro {_cell(metrics['roc_auc_macro'], 0)}"
    )
    lines.append("")
    width = max([len("label"), *(len(name) for name in metrics["per_class"])]) + 2
    columns = ("precision", "recall", "f1", "roc_auc", "threshold")
    lines.append(f"{'label':<{width}}" + "".join(f"{c:>10}" for c in columns) + f"{'support':>9}")
    for name, row in metrics["per_class"].items():
        cells = "".join(_cell(row[c], 10) for c in columns)
        lines.append(f"{name:<{width}}{cells}{row['support']:>9}")
    return "\n".join(lines)


def _cell(value: float | None, width: int) -> str:
    text = "-" if value is None else f"{value:.4f}"
    return f"{text:>{width}}"


def validate_thresholds(thresholds: float | np.ndarray | list[float], n_labels: int) -> np.ndarray:
    """Check per-class thresholds and return them as a float64 array of length ``n_labels``.

    A single number applies to every class. Raises :class:`ConfigError` when the length is not
    ``n_labels``, or a value is NaN or outside [0, 1].
    """
    arr = np.asarray(thresholds, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_labels, float(arr))
    if arr.ndim != 1 or arr.shape[0] != n_labels:
        raise ConfigError(
            f"expected {n_labels} thresholds (one per label), got shape {arr.shape}; "
            "give one number per label, in label order"
        )
    if np.isnan(arr).any():
        bad = np.flatnonzero(np.isnan(arr)).tolist()
        raise ConfigError(f"thresholds at positions {bad} are NaN; use numbers in [0, 1]")
    outside = (arr < 0.0) | (arr > 1.0)
    if outside.any():
        bad = {int(i): float(arr[i]) for i in np.flatnonzero(outside)}
        raise ConfigError(f"thresholds must lie in [0, 1]; got {bad} (position: value)")
    return arr


def check_label_arrays(
    y_true: np.ndarray, second: np.ndarray, label_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate gold labels [n, L] (0/1), predictions or scores of the same shape, and an
    optional annotation mask; returns (bool gold, predictions, bool mask)."""
    y = np.asarray(y_true)
    other = np.asarray(second)
    if y.ndim != 2 or y.shape != other.shape:
        raise ValueError(f"expected two [n, L] arrays of the same shape, got {y.shape} and {other.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if not np.isfinite(other.astype(np.float64)).all():
        raise ValueError("predictions must be finite numbers")
    if label_mask is None:
        m = np.ones(y.shape, dtype=bool)
    else:
        m = np.asarray(label_mask, dtype=bool)
        if m.shape != y.shape:
            raise ValueError(f"label_mask must have shape {y.shape}, got {m.shape}")
    return y.astype(bool), other, m


def _label_names(label_names: list[str] | None, n_labels: int) -> list[str]:
    if label_names is None:
        return [f"label_{j}" for j in range(n_labels)]
    names = [str(name) for name in label_names]
    if len(names) != n_labels or len(set(names)) != n_labels:
        raise ValueError(f"label_names must be {n_labels} distinct names, got {names}")
    return names


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den, with 0.0 where den == 0 (the zero-division convention of this module)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _mean_or_nan(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _roc_auc_per_class(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """ROC-AUC per class over annotated rows via the rank-sum (Mann-Whitney U) identity; NaN if undefined."""
    pos = (y & m).sum(axis=0).astype(np.float64)
    neg = (~y & m).sum(axis=0).astype(np.float64)
    # One row per class (contiguous, so the sort is fast); unannotated cells sort last and are
    # not summed, so they do not change the ranks of annotated ones.
    scores = np.ascontiguousarray(np.where(m, p.astype(np.float64), np.inf).T)
    order = np.argsort(scores, axis=1)
    s = np.take_along_axis(scores, order, axis=1)
    is_pos = np.take_along_axis(np.ascontiguousarray((y & m).T), order, axis=1)
    # Tied scores share the average of their ranks, which gives ties half credit, as the
    # trapezoidal ROC curve does.
    n = s.shape[1]
    idx = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, idx, n)[:, ::-1], axis=1)[:, ::-1]
    rank_sum = np.where(is_pos, (first + last) / 2.0 + 1.0, 0.0).sum(axis=1)
    defined = (pos > 0) & (neg > 0)
    u = rank_sum - pos * (pos + 1) / 2
    return np.where(defined, u / np.where(defined, pos * neg, 1.0), np.nan)


def _to_json_values(obj):
    """Recursively turn numpy scalars into Python floats/ints and NaN into None."""
    if isinstance(obj, dict):
        return {key: _to_json_values(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_to_json_values(value) for value in obj]
    if isinstance(obj, (float, np.floating)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.ndarray) and obj.ndim == 0:
        return _to_json_values(obj.item())
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
