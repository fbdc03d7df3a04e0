"""The pieces of a training loop that the encoder fine-tuning and the meta-learner share.

Seeding, length-bucketed batches (optionally drawn by rare-label weights), the AdamW groups of an
encoder, the warm-up + cosine schedule, one epoch of optimiser steps, and early stopping on a
validation score with the best epoch's weights kept.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Collection, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from emoscope import progress as run_progress  # (the `progress` parameter switches the bar)
from emoscope.config import TrainingConfig
from emoscope.losses import class_frequencies

BatchLoss = Callable[[np.ndarray], torch.Tensor]
"""The loss of one batch, given the indices of its examples."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                            indices: np.ndarray | None = None, pool: int = 50) -> list[np.ndarray]:
    """Shuffle, then sort by length inside pools of ``pool`` batches, then shuffle the batches.

    Padding then follows each batch's own longest text, while batch order stays random.
    ``indices`` (e.g. drawn by weighted sampling) defaults to every example once.
    """
    order = rng.permutation(len(lengths)) if indices is None else rng.permutation(indices)
    lengths = np.asarray(lengths)
    batches = []
    step = batch_size * pool
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def rare_label_sample_weights(labels: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-example sampling weight: the inverse frequency of its rarest positive label.

    Frequencies count annotated rows only. Examples with no positive label weigh like the most
    frequent label, so 'no emotion' texts are still seen.
    """
    freq = class_frequencies(labels, mask).clip(min=1.0 / max(len(labels), 1))
    inv = freq.max() / freq
    weights = np.where(labels.astype(bool), inv[None, :], 0.0).max(1)
    return np.where(weights > 0, weights, 1.0)


def epoch_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                  sample_weights: np.ndarray | None = None) -> list[np.ndarray]:
    """One epoch's batches: every example once, or (with ``sample_weights``) as many examples drawn
    with replacement by those weights."""
    indices = None
    if sample_weights is not None:
        n = len(lengths)
        indices = rng.choice(n, size=n, replace=True, p=sample_weights / sample_weights.sum())
    return length_bucketed_batches(lengths, batch_size, rng, indices)


def encoder_optimizer(model: nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW over an encoder classifier: no weight decay on biases and LayerNorms, the head
    (parameters named ``head.*``) at ``head_lr`` when set."""
    decay, no_decay, head = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            head.append(param)
        elif param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": training.weight_decay, "lr": training.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": training.lr},
        {"params": head, "weight_decay": training.weight_decay, "lr": training.head_lr or training.lr},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def cosine_schedule(optimizer: torch.optim.Optimizer, n_examples: int, batch_size: int, epochs: int,
                    warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of all steps, then cosine decay to 0."""
    total_steps = math.ceil(n_examples / batch_size) * epochs
    return get_cosine_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)


def train_epoch(model: nn.Module, batches: Sequence[np.ndarray], batch_loss: BatchLoss,
                optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, *,
                grad_clip: float, desc: str = "", progress: bool = False) -> float:
    """One optimiser step per batch (gradient norm clipped at ``grad_clip``, 0 = off); returns the
    mean training loss per example. Each batch is reported as a (thinned) ``batch`` progress event."""
    model.train()
    loss_sum, seen = 0.0, 0
    report, started = run_progress.current(), time.perf_counter()
    bar = tqdm(batches, desc=desc, disable=not progress, leave=False, unit="batch")
    for done, idx in enumerate(bar, 1):
        loss = batch_loss(idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        report.tick("batch", done, len(batches), texts=seen, seconds=round(time.perf_counter() - started, 3))
    bar.close()
    return loss_sum / seen


class EarlyStopping:
    """Keeps the weights of the epoch with the best validation score and says when ``patience``
    epochs in a row have not improved it (by more than 1e-6). Weights named in ``frozen`` never
    change, so they are not copied (for a frozen word-embedding matrix that saves a copy of it)."""

    def __init__(self, patience: int, frozen: Collection[str] = ()):
        self.patience = patience
        self.frozen = set(frozen)
        self.best_score = -1.0
        self.best_epoch = 0
        self.stale = 0
        self._state: dict[str, torch.Tensor] | None = None

    def update(self, model: nn.Module, epoch: int, score: float) -> bool:
        """Record one epoch's score; True when it is time to stop."""
        if score > self.best_score + 1e-6:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                           if k not in self.frozen}
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights back into ``model`` (the frozen ones are still in place)."""
        if self._state is not None:
            model.load_state_dict(self._state, strict=False)
