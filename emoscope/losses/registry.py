"""The loss registry: the base class of every loss, the names a recipe may use, and ``build_loss``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
from torch import Tensor, nn

from emoscope.errors import ConfigError


class MultiLabelLoss(nn.Module):
    """Base of the losses :func:`build_loss` makes: ``forward(logits, targets, mask=None, features=None)``.

    ``features`` is the pooled representation ``[B, D]`` the model computed the logits from. The
    losses here do not use it; losses that shape the representation (a contrastive term) do, so
    the training loop always passes it and never needs to know which loss it holds.
    """

    def forward(
        self, logits: Tensor, targets: Tensor, mask: Tensor | None = None, features: Tensor | None = None
    ) -> Tensor:
        raise NotImplementedError


#: name -> factory ``(train_labels, train_mask, **params) -> MultiLabelLoss``; see :func:`register_loss`.
LOSSES: dict[str, Callable[..., MultiLabelLoss]] = {}


def register_loss(name: str) -> Callable[[Callable[..., MultiLabelLoss]], Callable[..., MultiLabelLoss]]:
    """Decorator that makes a loss factory available to :func:`build_loss` under ``name``.

    The factory takes ``(train_labels, train_mask, **params)``; its keyword parameters are the
    options a training recipe may set for that loss.
    """

    def add(factory: Callable[..., MultiLabelLoss]) -> Callable[..., MultiLabelLoss]:
        if name in LOSSES:
            raise ValueError(f"a loss named {name!r} is already registered")
        LOSSES[name] = factory
        return factory

    return add


def build_loss(
    name: str, train_labels: np.ndarray, train_mask: np.ndarray | None = None, **params: object
) -> MultiLabelLoss:
    """Build the loss ``name`` (``"bce"``, ``"weighted_bce"``, ``"focal"``, ``"hybrid"``) from the training labels.

    Class statistics come from ``train_labels [n, L]`` over the cells where ``train_mask`` is True.
    Unknown names or options raise :class:`ConfigError` listing the valid ones.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}")
    factory = LOSSES[name]
    options = [p for p in inspect.signature(factory).parameters if p not in ("train_labels", "train_mask")]
    unknown = sorted(set(params) - set(options))
    if unknown:
        raise ConfigError(
            f"loss {name!r} has no option(s) {unknown}; its options: {', '.join(options) or 'none'}"
        )
    return factory(np.asarray(train_labels), train_mask, **params)


def loss_names() -> tuple[str, ...]:
    """The registered loss names, in registration order (what a recipe may name)."""
    return tuple(LOSSES)
