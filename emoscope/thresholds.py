"""Per-class decision thresholds: tune them on held-out probabilities, check them, apply them.

A multi-label model outputs one probability per label; turning those into labels with a single
0.5 cut-off hurts rare labels, whose probabilities rarely climb that high. Each class instead
gets the threshold that maximises its own F1 on validation (or out-of-fold) probabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from emoscope.errors import ConfigError
from emoscope.metrics import check_label_arrays, validate_thresholds

if TYPE_CHECKING:
    from emoscope.config import ThresholdConfig

__all__ = ["apply_thresholds", "choose_thresholds", "tune_thresholds", "validate_thresholds"]

# Gaps narrower than this between adjacent scores are not cut points: the midpoint of two floats
# that close can round onto the lower one, and that threshold would then let the lower score through.
_SAME_SCORE_EPS = 1e-12


def apply_thresholds(probs: np.ndarray, thresholds: float | np.ndarray) -> np.ndarray:
    """Turn probabilities ``[n, L]`` into 0/1 labels (``uint8``): a label is on when ``prob >= threshold``."""
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D [n, L], got shape {probs.shape}")
    thr = validate_thresholds(thresholds, probs.shape[1])
    return (probs >= thr).astype(np.uint8)


def choose_thresholds(config: ThresholdConfig, y_true: np.ndarray, probs: np.ndarray,
                      label_mask: np.ndarray | None = None) -> np.ndarray:
    """The thresholds a recipe's ``[thresholds]`` section asks for: tuned per class on these
    held-out probabilities (``tune = true``), or its ``fallback`` for every class. The one place
    training (single encoder, stage 1, stage 3, ablations) chooses thresholds."""
    if config.tune:
        return tune_thresholds(y_true, probs, label_mask=label_mask, fallback=config.fallback)
    return np.full(np.asarray(y_true).shape[1], config.fallback)


def tune_thresholds(
    y_true: np.ndarray,
    probs: np.ndarray,
    label_mask: np.ndarray | None = None,
    grid: np.ndarray | list[float] | None = None,
    fallback: float = 0.5,
) -> np.ndarray:
    """Return, per class, the threshold that maximises that class's F1 on ``(y_true, probs)``.

    Args:
        y_true: gold labels ``[n, L]``, 0/1.
        probs: predicted probabilities ``[n, L]`` in [0, 1], from data the model was not fit on
            (validation set or out-of-fold predictions); tuning on training predictions overfits.
        label_mask: ``[n, L]`` bool, True where the label is annotated; other cells are ignored.
        grid: candidate thresholds to search. ``None`` (default) sweeps every cut point between
            adjacent distinct probabilities of the class and uses the midpoint of the gap, so the
            chosen threshold does not sit on a training score and generalises to new scores; the
            cut below the smallest score is halfway between it and 0.
        fallback: threshold for a class with no annotated positives, where F1 says nothing.

    Ties in F1 go to the candidate closest to 0.5 (the default cut-off), then to the higher one.
    Returns a float64 array ``[L]``.
    """
    y, p, m = _check_inputs(y_true, probs, label_mask)
    validate_thresholds(fallback, 1)
    if grid is None:
        thresholds, best_f1 = _sweep_cut_points(y, p, m)
    else:
        candidates = np.ravel(np.asarray(grid, dtype=np.float64))
        if candidates.size == 0:
            raise ConfigError("the threshold grid is empty; give at least one value in [0, 1]")
        thresholds, best_f1 = _search_grid(y, p, m, validate_thresholds(candidates, candidates.size))
    positives = (y & m).sum(axis=0)
    return np.where((positives > 0) & np.isfinite(best_f1), thresholds, fallback)


def _check_inputs(
    y_true: np.ndarray, probs: np.ndarray, label_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p, m = check_label_arrays(y_true, np.asarray(probs, dtype=np.float64), label_mask)
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probs must be finite probabilities in [0, 1]")
    return y, p, m


def _pick(f1: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``f1`` / ``thresholds`` ``[K, L]`` (NaN = not a candidate): best F1, ties to 0.5."""
    best = np.max(np.where(np.isnan(f1), -np.inf, f1), axis=0)
    is_best = f1 == best
    # Distance to 0.5, with a tiny push toward higher thresholds to make equal distances deterministic.
    closeness = -np.abs(thresholds - 0.5) + 1e-9 * thresholds
    choice = np.argmax(np.where(is_best, closeness, -np.inf), axis=0)
    cols = np.arange(f1.shape[1])
    return thresholds[choice, cols], best


def _sweep_cut_points(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, n_labels = p.shape
    if n == 0:
        return np.full(n_labels, np.nan), np.full(n_labels, np.nan)
    # Unannotated cells sort to the bottom (score -1) and carry no counts.
    scores = np.where(m, p, -1.0)
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    pos = np.take_along_axis(y & m, order, axis=0)
    neg = np.take_along_axis(~y & m, order, axis=0)
    tp = np.cumsum(pos, axis=0)
    fp = np.cumsum(neg, axis=0)
    fn = tp[-1] - tp
    # Cutting after sorted position i predicts positive every row with a score >= s[i].
    below = np.vstack([s[1:], np.full((1, n_labels), -1.0)])
    is_cut = (s >= 0) & (s - below > _SAME_SCORE_EPS)
    thresholds = (s + np.maximum(below, 0.0)) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(is_cut, 2 * tp / (2 * tp + fp + fn), np.nan)
    return _pick(f1, thresholds)


def _search_grid(
    y: np.ndarray, p: np.ndarray, m: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    grid = np.unique(grid)
    n_labels = p.shape[1]
    tp = np.empty((grid.size, n_labels))
    fp = np.empty((grid.size, n_labels))
    positives = (y & m).sum(axis=0)
    for j in range(n_labels):
        # Count scores >= t for every t at once by binary search in the sorted column.
        pos_scores = np.sort(p[y[:, j] & m[:, j], j])
        neg_scores = np.sort(p[~y[:, j] & m[:, j], j])
        tp[:, j] = pos_scores.size - np.searchsorted(pos_scores, grid, side="left")
        fp[:, j] = neg_scores.size - np.searchsorted(neg_scores, grid, side="left")
    fn = positives - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (2 * tp + fp + fn)
    thresholds = np.broadcast_to(grid[:, None], f1.shape)
    return _pick(f1, thresholds)
