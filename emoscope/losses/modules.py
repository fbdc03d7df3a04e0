"""The losses as ``nn.Module``s holding their class statistics as buffers, and the factories that
build each from the training labels, registered under the names a recipe uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from emoscope.errors import ConfigError
from emoscope.losses.functions import (bce_loss, class_frequencies, cooccurrence_target, focal_alpha_from_frequencies,
                                       focal_loss, inverse_frequency_weights, label_correlation_loss,
                                       supervised_contrastive_loss, weighted_bce_loss)
from emoscope.losses.recipe import LossConfig
from emoscope.losses.registry import MultiLabelLoss, register_loss


class BCELoss(MultiLabelLoss):
    """Plain binary cross-entropy (see :func:`bce_loss`)."""

    def forward(
        self, logits: Tensor, targets: Tensor, mask: Tensor | None = None, features: Tensor | None = None
    ) -> Tensor:
        return bce_loss(logits, targets, mask)


class WeightedBCELoss(MultiLabelLoss):
    """BCE with per-class positive weights held as a buffer (see :func:`weighted_bce_loss`)."""

    pos_weight: Tensor

    def __init__(self, pos_weight: np.ndarray | Tensor):
        super().__init__()
        self.register_buffer("pos_weight", torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(
        self, logits: Tensor, targets: Tensor, mask: Tensor | None = None, features: Tensor | None = None
    ) -> Tensor:
        return weighted_bce_loss(logits, targets, self.pos_weight, mask)


class FocalLoss(MultiLabelLoss):
    """Focal loss with per-class alpha held as a buffer (see :func:`focal_loss`)."""

    alpha: Tensor

    def __init__(self, alpha: np.ndarray | Tensor, gamma: float = LossConfig.gamma):
        super().__init__()
        if not gamma >= 0:
            raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
        self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32))
        self.gamma = float(gamma)

    def forward(
        self, logits: Tensor, targets: Tensor, mask: Tensor | None = None, features: Tensor | None = None
    ) -> Tensor:
        return focal_loss(logits, targets, self.alpha, self.gamma, mask)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


@register_loss("bce")
def _make_bce(train_labels: np.ndarray, train_mask: np.ndarray | None) -> MultiLabelLoss:
    return BCELoss()


@register_loss("weighted_bce")
def _make_weighted_bce(
    train_labels: np.ndarray, train_mask: np.ndarray | None, max_weight: float | None = LossConfig.max_weight
) -> MultiLabelLoss:
    return WeightedBCELoss(inverse_frequency_weights(train_labels, train_mask, max_weight=max_weight))


@register_loss("focal")
def _make_focal(
    train_labels: np.ndarray,
    train_mask: np.ndarray | None,
    gamma: float = LossConfig.gamma,
    alpha: float | list[float] | None = None,
) -> MultiLabelLoss:
    """``alpha=None`` derives class-wise alphas from the training frequencies; a number or list overrides."""
    n_labels = np.asarray(train_labels).shape[1]
    if alpha is None:
        a = focal_alpha_from_frequencies(class_frequencies(train_labels, train_mask))
    else:
        a = np.asarray(alpha, dtype=np.float64)
        if a.ndim == 0:
            a = np.full(n_labels, float(a))
        if a.shape != (n_labels,) or np.isnan(a).any() or (a < 0).any() or (a > 1).any():
            raise ConfigError(f"focal alpha must be one number or {n_labels} numbers in [0, 1], got {alpha}")
    return FocalLoss(a, gamma=gamma)


class HybridLoss(MultiLabelLoss):
    """Class-weighted BCE + label-correlation term + supervised contrastive term.

    ``bce_weight * weighted_bce + correlation_weight * label_correlation_loss
    + contrastive_weight * supervised_contrastive_loss(features)``. Each term has its own weight
    (0 switches it off, for ablations). The contrastive term needs the pooled ``features`` the
    logits came from.
    """

    pos_weight: Tensor
    cooccurrence: Tensor

    def __init__(self, pos_weight: np.ndarray, cooccurrence: np.ndarray, bce_weight: float = LossConfig.bce_weight,
                 correlation_weight: float = LossConfig.correlation_weight,
                 contrastive_weight: float = LossConfig.contrastive_weight,
                 temperature: float = LossConfig.temperature):
        super().__init__()
        for name, value in (("bce_weight", bce_weight), ("correlation_weight", correlation_weight),
                            ("contrastive_weight", contrastive_weight)):
            if not value >= 0:
                raise ConfigError(f"hybrid loss {name} must be >= 0, got {value}")
        if not temperature > 0:
            raise ConfigError(f"hybrid loss temperature must be > 0, got {temperature}")
        self.register_buffer("pos_weight", torch.as_tensor(pos_weight, dtype=torch.float32))
        self.register_buffer("cooccurrence", torch.as_tensor(cooccurrence, dtype=torch.float32))
        self.bce_weight, self.correlation_weight = float(bce_weight), float(correlation_weight)
        self.contrastive_weight, self.temperature = float(contrastive_weight), float(temperature)

    def forward(
        self, logits: Tensor, targets: Tensor, mask: Tensor | None = None, features: Tensor | None = None
    ) -> Tensor:
        total = self.bce_weight * weighted_bce_loss(logits, targets, self.pos_weight, mask)
        if self.correlation_weight:
            total = total + self.correlation_weight * label_correlation_loss(logits, self.cooccurrence, mask)
        if self.contrastive_weight:
            if features is None:
                raise ValueError("the hybrid loss's contrastive term needs the pooled features")
            total = total + self.contrastive_weight * supervised_contrastive_loss(features, targets, self.temperature, mask)
        return total

    def extra_repr(self) -> str:
        return (f"bce_weight={self.bce_weight}, correlation_weight={self.correlation_weight}, "
                f"contrastive_weight={self.contrastive_weight}, temperature={self.temperature}")


@register_loss("hybrid")
def _make_hybrid(
    train_labels: np.ndarray,
    train_mask: np.ndarray | None,
    max_weight: float | None = LossConfig.max_weight,
    bce_weight: float = LossConfig.bce_weight,
    correlation_weight: float = LossConfig.correlation_weight,
    contrastive_weight: float = LossConfig.contrastive_weight,
    temperature: float = LossConfig.temperature,
    class_weighting: bool = LossConfig.class_weighting,
) -> MultiLabelLoss:
    """``class_weighting=False`` replaces the class-weighted BCE term by plain BCE (for ablations)."""
    weights = inverse_frequency_weights(train_labels, train_mask, max_weight=max_weight)
    return HybridLoss(weights if class_weighting else np.ones_like(weights),
                      cooccurrence_target(train_labels, train_mask), bce_weight=bce_weight,
                      correlation_weight=correlation_weight, contrastive_weight=contrastive_weight,
                      temperature=temperature)
