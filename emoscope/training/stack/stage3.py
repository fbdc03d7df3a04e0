"""Stage 3 of the stack: the Bi-LSTM meta-learner, trained on stage 2's cached word vectors.

:func:`fit_meta` trains one meta-learner from a recipe (its ``[meta]``, ``[loss]`` and
``[thresholds]`` sections and its seed) on a :class:`MetaSelection` (which encoders' vectors,
out-of-fold or naive, with or without the base classifiers' logits), early-stopping on validation
macro-F1, in seconds to minutes. The ablation trains one per variant from the same stage 2.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emoscope import progress
from emoscope.config import RunConfig
from emoscope.data import Dataset, TrainingData
from emoscope.losses import MultiLabelLoss, loss_from_config
from emoscope.metrics import compute_metrics
from emoscope.models.meta import MetaEnsemble, MetaLearner, build_meta
from emoscope.models.runtime import EVAL_BATCH_SIZE, batched_probs
from emoscope.thresholds import choose_thresholds
from emoscope.training.loop import EarlyStopping, cosine_schedule, epoch_batches, seed_everything, train_epoch
from emoscope.training.run import Logger
from emoscope.training.stack.embeddings import RaggedRows
from emoscope.training.stack.stage2 import StackInputs

META_WARMUP_RATIO = 0.05
META_GRAD_CLIP = 1.0
MEMBER_SEED_STEP = 1000  # member i of a meta-learner ensemble trains with seed + 1000 i


@dataclass
class MetaSelection:
    """What one meta-learner trains on: the chosen encoders' stacked word vectors of the training
    and validation texts, their sizes, and (when it reads them) the base classifiers' logits per
    text (``[n, n_base * L]``), with the two datasets' labels."""

    train: RaggedRows
    validation: RaggedRows
    input_sizes: list[int]
    train_ds: Dataset
    validation_ds: Dataset
    train_base: np.ndarray | None = None
    validation_base: np.ndarray | None = None

    @classmethod
    def of(cls, stacked: StackInputs, names: Sequence[str], data: TrainingData, *, naive: bool = False,
           base: bool = True, text_bases: Sequence[str] | None = None) -> MetaSelection:
        """Encoders ``names`` of stage 2's output; ``naive``: training vectors from the models trained
        on those texts; ``base = False``: without the base classifiers' logits (the text bases'
        included); ``text_bases``: which ``[[bases]]`` it reads (None: all)."""
        return cls(train=stacked.select(names, "train", naive=naive), validation=stacked.select(names, "validation"),
                   input_sizes=[stacked.input_sizes[stacked.encoders.index(n)] for n in names],
                   train_ds=data.train, validation_ds=data.validation,
                   train_base=stacked.select_base(names, "train", naive=naive, text_bases=text_bases) if base else None,
                   validation_base=stacked.select_base(names, "validation", text_bases=text_bases) if base else None)


@dataclass
class MetaFit:
    meta: MetaLearner
    history: list[dict[str, Any]]
    best_epoch: int
    val_probs: np.ndarray
    thresholds: np.ndarray
    seconds: float
    members: list[MetaFit] = dataclasses.field(default_factory=list)  # an ensemble's members, each as trained alone


def _base_batch(base: np.ndarray | None, idx: Sequence[int], device: torch.device) -> torch.Tensor | None:
    return None if base is None else torch.from_numpy(np.ascontiguousarray(base[idx])).to(device)


@torch.inference_mode()
def meta_probs(meta: MetaLearner, rows: RaggedRows, device: torch.device, base: np.ndarray | None = None,
               batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """The meta-learner's probabilities ``[n, L]`` of the texts whose stacked word vectors are ``rows``."""
    meta.eval()

    def logits_of(idx: np.ndarray) -> torch.Tensor:
        x, n = rows.batch(idx, device)
        return meta(x, n, base=_base_batch(base, idx, device))

    return batched_probs(rows.lengths(), batch_size, meta.n_labels, logits_of)


class MetaBatchLoss:
    """The loss of one training batch of the meta-learner."""

    def __init__(self, meta: MetaLearner, selection: MetaSelection, loss_fn: MultiLabelLoss, device: torch.device):
        self.meta, self.selection, self.loss_fn, self.device = meta, selection, loss_fn, device
        train_ds = selection.train_ds
        self.targets = torch.as_tensor(train_ds.labels, dtype=torch.float32)
        self.mask = None if train_ds.label_mask is None else torch.as_tensor(train_ds.label_mask, dtype=torch.bool)

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        device = self.device
        x, n = self.selection.train.batch(idx, device)
        targets = self.targets[idx].to(device)
        mask = None if self.mask is None else self.mask[idx].to(device)
        logits, features = self.meta(x, n, return_features=True, base=_base_batch(self.selection.train_base, idx, device))
        return self.loss_fn(logits, targets, mask=mask, features=features)


def _validate(meta: MetaLearner, config: RunConfig, selection: MetaSelection,
              device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Validation probabilities and the thresholds the recipe chooses on them."""
    val_ds = selection.validation_ds
    probs = meta_probs(meta, selection.validation, device, selection.validation_base)
    return probs, choose_thresholds(config.thresholds, val_ds.labels, probs, val_ds.label_mask)


def fit_meta(config: RunConfig, selection: MetaSelection, *, device: torch.device, log: Logger = print) -> MetaFit:
    """Train the Bi-LSTM meta-learner of recipe ``config`` on ``selection``, early-stopping on
    validation macro-F1 (reading the base classifiers' logits when the selection has them; see
    :class:`MetaLearner`). Each epoch is reported as an ``epoch`` progress event (``stage = "meta"``).

    With ``meta.ensemble = k > 1``: k meta-learners, each trained alone exactly so (member ``i``
    with seed ``seed + 1000 i``, so member 0 is the single meta-learner of the same recipe), joined
    as a :class:`MetaEnsemble`, whose validation probabilities choose the thresholds. The history
    and best epoch are member 0's; the log names every member's."""
    k = config.meta.ensemble
    if k == 1:
        return _fit_member(config, selection, device=device, log=log)
    started = time.perf_counter()
    seed = config.training.seed
    fits = []
    for i in range(k):
        member = config.replace(training=dataclasses.replace(config.training, seed=seed + MEMBER_SEED_STEP * i))
        fits.append(_fit_member(member, selection, device=device, log=log, member=(i, k)))
    ensemble = MetaEnsemble([f.meta for f in fits])
    probs, thresholds = _validate(ensemble.to(device), config, selection, device)
    val_ds = selection.validation_ds
    f1 = compute_metrics(val_ds.labels, probs, thresholds, label_mask=val_ds.label_mask)["macro_f1"]
    seconds = time.perf_counter() - started
    log(f"[stage 3] meta-learner ensemble of {k} (best epochs {', '.join(str(f.best_epoch) for f in fits)}): "
        f"validation macro-F1 {f1:.4f}, {seconds:.1f}s")
    return MetaFit(ensemble.cpu(), fits[0].history, fits[0].best_epoch, probs, thresholds, seconds, fits)


def _fit_member(config: RunConfig, selection: MetaSelection, *, device: torch.device, log: Logger,
                member: tuple[int, int] | None = None) -> MetaFit:
    """One meta-learner (member ``i`` of ``k`` of an ensemble, when ``member`` says so)."""
    started = time.perf_counter()
    meta_cfg, seed = config.meta, config.training.seed
    train_ds, val_ds = selection.train_ds, selection.validation_ds
    seed_everything(seed)
    n_labels = len(train_ds.label_names)
    n_base = 0 if selection.train_base is None else selection.train_base.shape[1] // n_labels
    if (selection.train_base is None) != (selection.validation_base is None):
        raise ValueError("give the base classifiers' logits for both the training and the validation texts, or neither")
    meta = build_meta(selection.input_sizes, n_labels, meta_cfg, n_base, ensemble=1).to(device)
    loss_fn = loss_from_config(config.loss, train_ds.labels, train_ds.label_mask).to(device)
    optimizer = torch.optim.AdamW(meta.parameters(), lr=meta_cfg.lr, weight_decay=meta_cfg.weight_decay)
    scheduler = cosine_schedule(optimizer, len(train_ds), meta_cfg.batch_size, meta_cfg.epochs, META_WARMUP_RATIO)
    batch_loss = MetaBatchLoss(meta, selection, loss_fn, device)
    rng = np.random.default_rng(seed)
    lengths = selection.train.lengths()
    stopping = EarlyStopping(meta_cfg.patience)
    history: list[dict[str, Any]] = []
    report = progress.current()
    for epoch in range(1, meta_cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_epoch(meta, epoch_batches(lengths, meta_cfg.batch_size, rng), batch_loss, optimizer,
                                 scheduler, grad_clip=META_GRAD_CLIP)
        probs, thresholds = _validate(meta, config, selection, device)
        scored = compute_metrics(val_ds.labels, probs, thresholds, label_names=val_ds.label_names,
                                 label_mask=val_ds.label_mask)
        f1 = scored["macro_f1"]
        history.append({"epoch": epoch, "train_loss": train_loss, "val_macro_f1": f1,
                        "seconds": time.perf_counter() - t0})
        report.emit("epoch", stage="meta", **({} if member is None else {"member": member[0], "members": member[1]}),
                    epoch=epoch, epochs=meta_cfg.epochs, train_loss=train_loss, val_macro_f1=f1,
                    seconds=history[-1]["seconds"], texts=len(train_ds),
                    val_f1={k: v["f1"] for k, v in scored["per_class"].items()})
        if stopping.update(meta, epoch, f1):
            break
    stopping.restore(meta)
    probs, thresholds = _validate(meta, config, selection, device)
    seconds = time.perf_counter() - started
    which = "" if member is None else f" {member[0] + 1} of {member[1]}"
    log(f"[stage 3] meta-learner{which} ({config.loss.name}): best epoch {stopping.best_epoch} of {len(history)}, "
        f"validation macro-F1 {stopping.best_score:.4f}, {seconds:.1f}s")
    return MetaFit(meta.cpu(), history, stopping.best_epoch, probs, thresholds, seconds)
