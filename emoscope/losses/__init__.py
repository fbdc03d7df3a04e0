"""Multi-label training losses: BCE, weighted BCE, focal, hybrid; the registry that builds them by
name; and a recipe's ``[loss]`` section (:class:`LossConfig`). This package is the one home of the
loss names (``registry``), their options and defaults and how a recipe's section maps onto them
(``recipe``: :func:`loss_options`, :func:`loss_from_config`).

Every loss is a small pure function (``functions``) of ``logits [B, L]``, ``targets [B, L]``
(0/1) and an optional ``mask [B, L]`` (True = this label is annotated for this example). Masked
cells contribute nothing and the mean runs over unmasked cells only, which lets one batch mix
datasets with different label sets; a fully masked batch gives a loss of 0 that still
backpropagates (zero gradients, not NaN).

:func:`build_loss` wraps a loss in an ``nn.Module`` (``modules``) whose class statistics (weights,
alphas) are buffers computed from the training labels, so ``.to(device)`` and ``state_dict``
carry them. All losses are computed from logits with log-sigmoid, so extreme logits never take
``log(0)``.
"""

from __future__ import annotations

from emoscope.losses.functions import (bce_loss, class_frequencies, cooccurrence_target, focal_alpha_from_frequencies,
                                       focal_loss, inverse_frequency_weights, label_correlation_loss, per_class_bce,
                                       supervised_contrastive_loss, weighted_bce_loss)
from emoscope.losses.modules import BCELoss, FocalLoss, HybridLoss, WeightedBCELoss
from emoscope.losses.recipe import LossConfig, loss_from_config, loss_options
from emoscope.losses.registry import LOSSES, MultiLabelLoss, build_loss, loss_names, register_loss

__all__ = [
    "LOSSES",
    "BCELoss",
    "FocalLoss",
    "HybridLoss",
    "LossConfig",
    "MultiLabelLoss",
    "WeightedBCELoss",
    "bce_loss",
    "build_loss",
    "class_frequencies",
    "cooccurrence_target",
    "focal_alpha_from_frequencies",
    "focal_loss",
    "inverse_frequency_weights",
    "label_correlation_loss",
    "loss_from_config",
    "loss_names",
    "loss_options",
    "per_class_bce",
    "register_loss",
    "supervised_contrastive_loss",
    "weighted_bce_loss",
]
