"""A recipe's ``[loss]`` section: which loss, its options and their defaults (the losses' own
defaults: the factories and loss classes read them from :class:`LossConfig`), and how a section
maps onto the chosen loss's options (:func:`loss_options`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emoscope.errors import ConfigError
from emoscope.losses.registry import MultiLabelLoss, build_loss, loss_names


@dataclass(frozen=True)
class LossConfig:
    """A recipe's ``[loss]`` section. ``gamma`` applies to focal; ``max_weight`` caps the class
    weights of weighted BCE and hybrid; the ``*_weight`` terms and ``temperature`` apply to hybrid
    (class-weighted BCE + label correlation + supervised contrastive; 0 switches a term off;
    ``class_weighting = false`` makes the first term plain BCE). Its defaults are the losses'
    defaults (the factories and loss classes read them from here).
    """

    name: str = "bce"
    gamma: float = 2.0
    max_weight: float | None = None
    bce_weight: float = 1.0
    correlation_weight: float = 0.1
    contrastive_weight: float = 0.1
    temperature: float = 0.1
    class_weighting: bool = True

    def __post_init__(self) -> None:
        if self.name not in loss_names():
            raise ConfigError(f"loss.name must be one of {', '.join(loss_names())}, got '{self.name}'")
        if self.gamma < 0:
            raise ConfigError(f"loss.gamma must be >= 0, got {self.gamma}")
        for name in ("bce_weight", "correlation_weight", "contrastive_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"loss.temperature must be > 0, got {self.temperature}")
        if self.max_weight is not None and self.max_weight < 1:
            raise ConfigError(f"loss.max_weight must be >= 1, got {self.max_weight}")


def loss_options(loss: LossConfig) -> dict[str, Any]:
    """The options of ``loss.name``'s factory, taken from a ``[loss]`` section."""
    if loss.name == "focal":
        return {"gamma": loss.gamma}
    options: dict[str, Any] = {}
    if loss.name in ("weighted_bce", "hybrid") and loss.max_weight is not None:
        options["max_weight"] = loss.max_weight
    if loss.name == "hybrid":
        options.update(bce_weight=loss.bce_weight, correlation_weight=loss.correlation_weight,
                       contrastive_weight=loss.contrastive_weight, temperature=loss.temperature,
                       class_weighting=loss.class_weighting)
    return options


def loss_from_config(loss: LossConfig, train_labels: np.ndarray, train_mask: np.ndarray | None = None) -> MultiLabelLoss:
    """The loss a ``[loss]`` section describes, its class statistics taken from the training labels."""
    return build_loss(loss.name, train_labels, train_mask, **loss_options(loss))
