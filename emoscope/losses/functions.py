"""The losses as pure functions of ``logits [B, L]``, ``targets [B, L]`` and an optional ``mask``,
and the class statistics (numpy, computed once from the training labels) that parameterise them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from emoscope.errors import ConfigError
from emoscope.losses.recipe import LossConfig


# --- class statistics (numpy, computed once from the training labels) -------------------------


def class_frequencies(Y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Positive rate of each class over its annotated rows, ``[L]`` float64.

    A class with no annotated rows gets 0.0 (nothing is known about it; the weighting functions
    below treat it like a class that never occurs).
    """
    y = np.asarray(Y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"Y must be a 2-D [n, L] label matrix, got shape {y.shape}")
    m = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != y.shape:
        raise ValueError(f"mask must have shape {y.shape}, got {m.shape}")
    annotated = m.sum(axis=0)
    positives = np.where(m, y, 0.0).sum(axis=0)
    return np.divide(positives, annotated, out=np.zeros(y.shape[1]), where=annotated > 0)


def inverse_frequency_weights(
    Y: np.ndarray, mask: np.ndarray | None = None, max_weight: float | None = None
) -> np.ndarray:
    """Per-class weights ``w_j = max_k(f_k) / f_j``: the most frequent class gets 1, rarer ones more.

    ``f`` is :func:`class_frequencies`. A class with ``f_j = 0`` (no positives in training) gets
    the largest weight among the other classes rather than infinity; its positive term never
    appears in training anyway, and an infinite weight would poison the loss if one did. If no
    class has positives, every weight is 1. ``max_weight`` (>= 1) caps the weights, which keeps
    a class with a handful of positives from dominating the gradient.
    """
    if max_weight is not None and not max_weight >= 1.0:
        raise ConfigError(f"max_weight must be at least 1 (the most frequent class has weight 1), got {max_weight}")
    f = class_frequencies(Y, mask)
    present = f > 0
    if not present.any():
        return np.ones_like(f)
    weights = np.ones_like(f)
    weights[present] = f.max() / f[present]
    weights[~present] = weights[present].max()
    if max_weight is not None:
        weights = np.minimum(weights, max_weight)
    return weights


def focal_alpha_from_frequencies(f: np.ndarray, low: float = 0.25, high: float = 0.95) -> np.ndarray:
    """Class-wise focal alpha ``alpha_j = clip(1 - f_j, low, high)`` from positive rates ``f``.

    With ``alpha_j = 1 - f_j`` the expected alpha mass on positives (``f_j * alpha_j``) equals that on
    negatives (``(1 - f_j)(1 - alpha_j)``), so a rare class's positives are not drowned out. The clip
    keeps both terms alive: ``high`` stops a near-absent class from ignoring its negatives, ``low``
    stops a very common class from ignoring its positives (0.25 is the focal-loss paper's value).
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(f"focal alpha bounds need 0 <= low <= high <= 1, got low={low}, high={high}")
    return np.clip(1.0 - np.asarray(f, dtype=np.float64), low, high)


# --- loss functions (torch, pure) -------------------------------------------------------------


def bce_loss(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy from logits, mean over unmasked cells."""
    targets = _check(logits, targets, mask)
    return _masked_mean(_bce_terms(logits, targets), mask)


def weighted_bce_loss(
    logits: Tensor, targets: Tensor, weights: Tensor | np.ndarray, mask: Tensor | None = None
) -> Tensor:
    """BCE whose positive term for class j is multiplied by ``weights[j]`` (torch's ``pos_weight``).

    ``-[w_j * y * log sigmoid(x) + (1 - y) * log(1 - sigmoid(x))]``, mean over unmasked cells.
    The weight sits on the positive term only because inverse-frequency weighting exists to make
    rare positives count: a rare class's negatives are already plentiful, and scaling them too
    would cancel the effect. Matches ``binary_cross_entropy_with_logits(pos_weight=weights)``.
    """
    targets = _check(logits, targets, mask)
    w = _per_class(weights, logits, "weights")
    return _masked_mean(_bce_terms(logits, targets, w), mask)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: Tensor | np.ndarray | float,
    gamma: float = LossConfig.gamma,
    mask: Tensor | None = None,
) -> Tensor:
    """Focal loss with class-wise alpha, mean over unmasked cells.

    ``-alpha_t * (1 - p_t)^gamma * log p_t`` where ``p_t`` is the probability given to the true
    value, ``alpha_t = alpha_j`` for a positive and ``1 - alpha_j`` for a negative. ``gamma``
    down-weights examples the model already gets right. Both ``log p_t`` and ``(1 - p_t)^gamma``
    come from log-sigmoid of the logits, so the loss and its gradient stay finite at any logit,
    for any ``gamma >= 0``. Targets are meant to be 0/1 (soft targets interpolate the two terms).
    With ``gamma=0`` and ``alpha=0.5`` it is half the BCE.
    """
    targets = _check(logits, targets, mask)
    if not gamma >= 0:
        raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
    a = _per_class(alpha, logits, "alpha")
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    log_pt = targets * log_p + (1 - targets) * log_not_p
    log_one_minus_pt = targets * log_not_p + (1 - targets) * log_p
    alpha_t = targets * a + (1 - targets) * (1 - a)
    terms = -alpha_t * torch.exp(gamma * log_one_minus_pt) * log_pt
    return _masked_mean(terms, mask)


def per_class_bce(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """BCE per class ``[L]``, each the mean over that class's unmasked rows (0 for a class with none); for logging."""
    targets = _check(logits, targets, mask)
    terms = _bce_terms(logits, targets)
    if mask is None:
        return terms.mean(dim=0)
    m = mask.to(terms.dtype)
    return torch.where(mask, terms, 0.0).sum(dim=0) / m.sum(dim=0).clamp_min(1.0)


def _bce_terms(logits: Tensor, targets: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    positive = -targets * F.logsigmoid(logits)
    if pos_weight is not None:
        positive = positive * pos_weight
    return positive - (1 - targets) * F.logsigmoid(-logits)


def _masked_mean(terms: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return terms.mean()
    # where() rather than multiplying by the mask: a masked cell holding inf must not turn into NaN.
    kept = torch.where(mask, terms, 0.0)
    return kept.sum() / mask.sum().clamp_min(1).to(terms.dtype)


def _check(logits: Tensor, targets: Tensor, mask: Tensor | None) -> Tensor:
    if logits.ndim != 2 or targets.shape != logits.shape:
        raise ValueError(
            f"logits and targets must both be [B, L], got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if mask is not None and (mask.shape != logits.shape or mask.dtype != torch.bool):
        raise ValueError(f"mask must be a bool tensor of shape {tuple(logits.shape)}")
    return targets.to(logits.dtype)


def _per_class(values: Tensor | np.ndarray | float, logits: Tensor, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=logits.dtype, device=logits.device)
    if t.ndim == 0:
        return t
    if t.shape != (logits.shape[1],):
        raise ValueError(f"{name} must have one value per label ({logits.shape[1]}), got shape {tuple(t.shape)}")
    return t


def cooccurrence_target(Y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Training-label co-occurrence as conditional rates ``C[i, j] = P(j | i)``, ``[L, L]``.

    Counted over rows where both labels are annotated; a label with no positives gets a zero row.
    The diagonal is 1 for every label that occurs. This is what :func:`label_correlation_loss`
    asks the model's predictions to agree with.
    """
    y = np.asarray(Y, dtype=np.float64)
    m = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    pos = np.where(m, y, 0.0)
    joint = pos.T @ pos  # [L, L]: rows with i and j both positive
    base = pos.T @ m.astype(np.float64)  # [L, L]: rows with i positive and j annotated
    return np.divide(joint, base, out=np.zeros_like(joint), where=base > 0)


def label_correlation_loss(logits: Tensor, target: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Squared gap between the batch's predicted and the training labels' co-occurrence.

    With ``p = sigmoid(logits)``, the predicted ``P(j | i)`` is the soft count of rows holding
    both labels over the soft count holding ``i`` (among rows where both are annotated):
    ``pred[i, j] = sum_b p_bi p_bj / sum_b p_bi``. The loss is the mean of
    ``(pred[i, j] - target[i, j])^2`` over ``i != j``, each pair weighted by its soft count
    ``sum_b p_bi`` so pairs the batch says little about (label ``i`` barely predicted) count
    little and never divide by ~0. A batch of one example, or with nothing predicted, is fine.
    """
    _check(logits, logits, mask)
    p = torch.sigmoid(logits)
    m = torch.ones_like(p) if mask is None else mask.to(p.dtype)
    pm = p * m
    joint = pm.T @ pm
    base = pm.T @ m
    pred = joint / (base + eps)
    off = 1.0 - torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    weight = base * off
    total = weight.sum()
    gap = (pred - target.to(p.dtype)) ** 2
    return torch.where(total > 0, (weight * gap).sum() / total.clamp_min(eps), (weight * gap).sum())


def supervised_contrastive_loss(
    features: Tensor, targets: Tensor, temperature: float = LossConfig.temperature, mask: Tensor | None = None
) -> Tensor:
    """Supervised contrastive loss for multi-label data, positives weighted by label overlap.

    Features are L2-normalised; ``s_ij = z_i . z_j / temperature``. For anchor ``i`` every other
    example ``j`` is a positive with weight ``w_ij`` = Jaccard overlap of their label sets (over
    labels annotated for both; two empty sets overlap 0), and
    ``loss_i = -sum_j w_ij (s_ij - logsumexp_{k != i} s_ik) / sum_j w_ij``. The loss is the mean
    over anchors with at least one positive, and 0 (still differentiable) when no anchor has one,
    e.g. a batch of one example or without positive labels.
    """
    if features.ndim != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError(f"features must be [B, D] with B = {targets.shape[0]}, got {tuple(features.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = F.normalize(features, dim=-1)
    sim = z @ z.T / temperature
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    y = targets.to(z.dtype)
    if mask is not None:
        y = y * mask.to(z.dtype)
        both = mask.to(z.dtype) @ mask.to(z.dtype).T  # labels annotated for both
    else:
        both = None
    inter = y @ y.T
    union = y.sum(1, keepdim=True) + y.sum(1) - inter
    if both is not None:
        union = torch.minimum(union, both)
    w = torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter)).masked_fill(eye, 0.0)
    log_prob = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    per_anchor_weight = w.sum(1)
    has_positive = per_anchor_weight > 0
    per_anchor = -(w * log_prob.masked_fill(eye, 0.0)).sum(1) / per_anchor_weight.clamp_min(1e-12)
    if not bool(has_positive.any()):
        return features.sum() * 0.0
    return per_anchor[has_positive].mean()
