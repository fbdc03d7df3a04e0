"""Fine-tuning one encoder with a multi-label head, and the single-encoder recipe from data to bundle.

:func:`fit_classifier` fine-tunes with AdamW (warm-up + cosine schedule), evaluates validation
macro-F1 after every epoch (with the recipe's thresholds, tuned on the validation set), stops
early when it stops improving and restores the best epoch. Batches are bucketed by token length
so CPU time follows real text lengths rather than the longest text in a random batch. Stage 1
of the stacked ensemble fine-tunes its encoders with it too. :func:`train_classifier` runs a
single-encoder recipe end to end and writes its bundle.
"""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoscope import bundle as bundle_io
from emoscope import progress as run_progress  # (the `progress` parameters switch the bars)
from emoscope.config import EncoderConfig, LossConfig, RunConfig
from emoscope.data import Dataset
from emoscope.distributed import SINGLE, World, current_world
from emoscope.encoders import SOURCES, load_encoder, text_prefix
from emoscope.losses import MultiLabelLoss, loss_from_config, per_class_bce
from emoscope.manifest import EncoderEntry, ModelSpec, build_manifest
from emoscope.metrics import compute_metrics
from emoscope.models import EncoderClassifier, Runtime, autocast_context
from emoscope.models.runtime import peak_rss_mb
from emoscope.thresholds import choose_thresholds
from emoscope.training.loop import (EarlyStopping, cosine_schedule, encoder_optimizer, epoch_batches,
                                    rare_label_sample_weights, seed_everything, train_epoch)
from emoscope.training.run import Logger, load_run_data, refuse_existing, run_cost, run_plan
from emoscope.training.stack.embeddings import embeddings_cache
from emoscope.training.top_layers import LowerLayerStates, freeze_below_top
from emoscope.words import Encoded, WordEncoder


@dataclass
class FitResult:
    """A fine-tuned single-encoder classifier (best epoch restored) and how it got there."""

    model: EncoderClassifier
    history: list[dict[str, Any]]
    best_epoch: int
    val_probs: np.ndarray
    thresholds: np.ndarray


def build_classifier(config: RunConfig, enc_cfg: EncoderConfig, labels: list[str], device: torch.device,
                     log: Logger) -> EncoderClassifier:
    """The encoder with a fresh head, frozen as the recipe says, placed on ``device``."""
    tokenizer, encoder = load_encoder(enc_cfg.source)
    word_encoder = WordEncoder(tokenizer, config.text, enc_cfg.max_length, prefix=text_prefix(enc_cfg.source))
    model = EncoderClassifier(encoder, word_encoder, n_labels=len(labels), pooling=enc_cfg.pooling,
                              dropout=enc_cfg.dropout, name=enc_cfg.label, labels=labels)
    if not enc_cfg.fine_tune:
        model.encoder.requires_grad_(False)
        log("[model] encoder frozen: only the head trains")
    elif enc_cfg.train_layers:
        frozen = freeze_below_top(model.encoder, enc_cfg.train_layers)
        log(f"[model] only the top {enc_cfg.train_layers} layer(s) train ({frozen / 1e6:.1f}M parameters frozen)")
    elif enc_cfg.freeze_embeddings:
        frozen = model.freeze_word_embeddings()
        log(f"[model] word embeddings frozen ({frozen / 1e6:.1f}M parameters)")
    model.place(Runtime(device, None, config.training.eval_batch_size))
    return model


def tokenise(word_encoder: WordEncoder, train_ds: Dataset, val_ds: Dataset, max_length: int,
             log: Logger) -> tuple[list[Encoded], list[Encoded]]:
    """Token ids (and word index) of the training and validation texts, once for all epochs."""
    t0 = time.perf_counter()
    train_ids = word_encoder.encode_texts(train_ds.texts)
    val_ids = word_encoder.encode_texts(val_ds.texts)
    truncated = sum(len(ids) >= max_length for ids, _ in train_ids)
    log(f"[tokenise] {time.perf_counter() - t0:.1f}s; mean length {np.mean([len(ids) for ids, _ in train_ids]):.1f} "
        f"tokens; {truncated} training texts truncated at {max_length}")
    return train_ids, val_ids


class ClassifierBatchLoss:
    """The loss of one training batch of the classifier; also sums each label's BCE over the
    epoch, for the per-class loss in the training log."""

    def __init__(self, model: EncoderClassifier, train_ids: list[Encoded], train_ds: Dataset,
                 loss_fn: MultiLabelLoss, world: World = SINGLE, lower: LowerLayerStates | None = None):
        """``lower``: the training texts' stored frozen-layer states (``encoder.train_layers``)."""
        self.model, self.train_ids, self.loss_fn, self.lower = model, train_ids, loss_fn, lower
        # Several processes: each reads its slice of every batch through DDP (which averages the
        # gradients); one process: ``forward`` is the model itself.
        self.world, self.forward = world, world.wrap_for_training(model, model.runtime.device)
        self.targets = torch.as_tensor(train_ds.labels, dtype=torch.float32)
        # True = annotated; None when every dataset annotates every label (nothing to mask).
        self.mask = None if train_ds.label_mask is None else torch.as_tensor(train_ds.label_mask, dtype=torch.bool)
        self.class_loss_sum = torch.zeros(train_ds.labels.shape[1])
        self.seen = 0

    def start_epoch(self) -> None:
        self.class_loss_sum, self.seen = torch.zeros_like(self.class_loss_sum), 0

    def class_loss(self) -> torch.Tensor:
        """Each label's mean BCE over the examples of this epoch so far."""
        return self.class_loss_sum / self.seen

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        model = self.model
        device = model.runtime.device
        idx, scale = self.world.shard_batch(idx)
        batch = model.to_device([model.word_encoder.pad([self.train_ids[i] for i in idx])])
        targets = self.targets[idx].to(device)
        mask = None if self.mask is None else self.mask[idx].to(device)
        reading = self.lower.reading(idx) if self.lower is not None else contextlib.nullcontext()
        with reading, autocast_context(device):
            logits, features = self.forward(batch, return_features=True)
        loss = self.loss_fn(logits.float(), targets, mask=mask, features=features.float())
        self.class_loss_sum += per_class_bce(logits.detach().float(), targets, mask).cpu() * len(idx)
        self.seen += len(idx)
        return loss if scale == 1.0 else loss * scale


def epoch_row(epoch: int, train_loss: float, class_loss: torch.Tensor, val_ds: Dataset, val_probs: np.ndarray,
              thresholds: np.ndarray, seconds: float, lr: float, log: Logger, *, epochs: int | None = None,
              texts: int = 0) -> dict[str, Any]:
    """One epoch's row of the training log (validation scores at the tuned thresholds and at 0.5),
    logged, and reported as an ``epoch`` progress event (with each label's validation F1)."""
    labels = val_ds.label_names
    metrics = compute_metrics(val_ds.labels, val_probs, thresholds, label_names=labels, label_mask=val_ds.label_mask)
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_loss_per_class": dict(zip(labels, class_loss.tolist())),
        "val_macro_f1": metrics["macro_f1"],
        "val_micro_f1": metrics["micro_f1"],
        "val_macro_f1_at_0.5": compute_metrics(val_ds.labels, val_probs, 0.5, label_mask=val_ds.label_mask)["macro_f1"],
        "seconds": seconds,
        "lr": lr,
    }
    per_class = " ".join(f"{k}={v:.3f}" for k, v in row["train_loss_per_class"].items())
    log(f"[epoch {epoch}] loss {row['train_loss']:.4f} | val macro-F1 {row['val_macro_f1']:.4f} "
        f"micro-F1 {row['val_micro_f1']:.4f} | {row['seconds']:.0f}s | per-class loss {per_class}")
    run_progress.current().emit("epoch", stage="fine-tune", epoch=epoch, epochs=epochs, train_loss=train_loss,
                                val_macro_f1=row["val_macro_f1"], seconds=seconds, texts=texts,
                                val_f1={k: v["f1"] for k, v in metrics["per_class"].items()})
    return row


def validation_probs(model: EncoderClassifier, val_ids: list[Encoded], world: World,
                     lower: LowerLayerStates | None = None) -> np.ndarray:
    """The validation probabilities, every text: each process scores its share, all get them all
    (through the stored frozen-layer states ``lower`` when given: the same probabilities, sooner)."""
    if lower is not None:
        return lower.probs(model, model.runtime.batch_size)
    if not world.distributed:
        return model.probs_of_encoded(val_ids)
    mine = world.mine(len(val_ids))
    return world.gather_rows(model.probs_of_encoded([val_ids[i] for i in mine]), mine, len(val_ids))


def fit_classifier(config: RunConfig, enc_cfg: EncoderConfig, train_ds: Dataset, val_ds: Dataset, *,
                   device: torch.device, loss: LossConfig | None = None, progress: bool = True,
                   log: Logger = print, world: World = SINGLE) -> FitResult:
    """Fine-tune one encoder with a linear head on ``train_ds``, early-stopping on ``val_ds``
    (which the caller has checked: :func:`emoscope.training.run.require_positive_labels`).

    ``enc_cfg.fine_tune = false`` trains the head only (a linear probe on frozen features).
    ``loss`` replaces the recipe's loss (stage 1 fine-tunes with ``stack.finetune_loss``).
    With a multi-process ``world`` every process draws the same batches and trains on its slice
    of each (``World.shard_batch``); the validation set is scored in shares and gathered, so
    thresholds, scores and the early-stop decision are the same on every process.
    """
    t = config.training
    seed = t.seed if enc_cfg.seed is None else enc_cfg.seed
    seed_everything(seed)
    model = build_classifier(config, enc_cfg, list(train_ds.label_names), device, log)
    train_ids, val_ids = tokenise(model.word_encoder, train_ds, val_ds, enc_cfg.max_length, log)
    lower_train = lower_val = None
    if enc_cfg.train_layers:
        t0, cache = time.perf_counter(), embeddings_cache(config)
        lower_train, lower_val = (LowerLayerStates(model.encoder, model.word_encoder, device, enc_cfg.train_layers,
                                                   ids, cache) for ids in (train_ids, val_ids))
        log(f"[model] frozen layers' output of {len(train_ids) + len(val_ids)} texts: "
            f"{lower_train.cached + lower_val.cached} from the cache, {time.perf_counter() - t0:.0f}s")
    loss_fn = loss_from_config(loss or config.loss, train_ds.labels, train_ds.label_mask).to(device)
    optimizer = encoder_optimizer(model, t)
    scheduler = cosine_schedule(optimizer, len(train_ds), t.batch_size, t.epochs, t.warmup_ratio)
    rng = np.random.default_rng(seed)
    sample_weights = rare_label_sample_weights(train_ds.labels, train_ds.label_mask) if t.weighted_sampling else None
    batch_loss = ClassifierBatchLoss(model, train_ids, train_ds, loss_fn, world, lower_train)
    lengths = [len(ids) for ids, _ in train_ids]
    stopping = EarlyStopping(t.patience, frozen={n for n, p in model.named_parameters() if not p.requires_grad})
    history: list[dict[str, Any]] = []
    for epoch in range(1, t.epochs + 1):
        batches = epoch_batches(lengths, t.batch_size, rng, sample_weights)
        epoch_start = time.perf_counter()
        batch_loss.start_epoch()
        train_loss = train_epoch(model, batches, batch_loss, optimizer, scheduler, grad_clip=t.grad_clip,
                                 desc=f"epoch {epoch}/{t.epochs}", progress=progress)
        val_probs = validation_probs(model, val_ids, world, lower_val)
        thresholds = choose_thresholds(config.thresholds, val_ds.labels, val_probs, val_ds.label_mask)
        history.append(epoch_row(epoch, train_loss, batch_loss.class_loss(), val_ds, val_probs, thresholds,
                                 time.perf_counter() - epoch_start, scheduler.get_last_lr()[0], log,
                                 epochs=t.epochs, texts=len(train_ds)))
        if stopping.update(model, epoch, world.agree(history[-1]["val_macro_f1"])):
            log(f"[early stop] no macro-F1 gain for {t.patience} epochs; best epoch {stopping.best_epoch}")
            break
    stopping.restore(model)
    val_probs = validation_probs(model, val_ids, world, lower_val)
    thresholds = choose_thresholds(config.thresholds, val_ds.labels, val_probs, val_ds.label_mask)
    return FitResult(model=model, history=history, best_epoch=stopping.best_epoch, val_probs=val_probs,
                     thresholds=thresholds)


def classifier_spec(model: EncoderClassifier, enc_cfg: EncoderConfig, n_labels: int) -> ModelSpec:
    """The manifest's description of a single-encoder model."""
    encoder = model.encoder
    return ModelSpec(kind=EncoderClassifier.kind, path="model", pooling=enc_cfg.pooling,
                     max_length=enc_cfg.max_length, n_labels=n_labels,
                     encoders=[EncoderEntry(source=enc_cfg.source, offline_source=enc_cfg.source in SOURCES,
                                            text_prefix=text_prefix(enc_cfg.source),
                                            model_type=encoder.config.model_type,
                                            hidden_size=encoder.config.hidden_size)])


def train_classifier(config: RunConfig, output: str | Path, *, overwrite: bool = False, progress: bool = True,
                     log: Logger = print) -> Path:
    """Run a single-encoder recipe end to end and write its bundle to ``output``; returns its path.

    Under ``accelerate launch`` with several processes the model trains with DDP
    (:func:`fit_classifier`); the main process alone checks the output, scores the eval set and
    writes the bundle, while the others wait for it."""
    world = current_world()
    output = world.main_first(refuse_existing, output, overwrite)
    started = time.perf_counter()
    enc_cfg = config.encoder
    device = world.device(config.training.device)
    data = load_run_data(config, log)
    train_ds, val_ds = data.train, data.validation
    labels = train_ds.label_names
    report = run_progress.current()
    report.emit("plan", **run_plan(config, data))
    report.emit("stage", name="fine-tune", index=1, of=1)
    report.emit("model", encoder=enc_cfg.label, role="full", index=1, of=1, texts=len(train_ds), reused=False)
    fit = fit_classifier(config, enc_cfg, train_ds, val_ds, progress=progress, log=log, device=device, world=world)
    if not world.is_main:
        world.wait()  # for the main process's bundle
        return output
    report.emit("model_done", encoder=enc_cfg.label, role="full", best_epoch=fit.best_epoch,
                seconds=round(time.perf_counter() - started, 1))
    report.emit("stage", name="finish")
    model, thresholds = fit.model, fit.thresholds
    results = {"validation": compute_metrics(val_ds.labels, fit.val_probs, thresholds, label_names=labels,
                                             label_mask=val_ds.label_mask)}
    if data.eval is not None:
        eval_probs = model.predict_proba(data.eval.texts)
        results["eval"] = {"data": data.eval.name,
                           **compute_metrics(data.eval.labels, eval_probs, thresholds, label_names=labels,
                                             label_mask=data.eval.label_mask)}
        log(f"[eval] {data.eval.name}: macro-F1 {results['eval']['macro_f1']:.4f} micro-F1 {results['eval']['micro_f1']:.4f}")
    seconds = time.perf_counter() - started
    training = {"best_epoch": fit.best_epoch, "epochs_run": len(fit.history), "seconds": round(seconds, 1),
                **run_cost(device), "platform": platform.platform(),
                **({"processes": world.size} if world.distributed else {})}
    manifest = build_manifest(config, data, thresholds, classifier_spec(model, enc_cfg, len(labels)), results, training)
    validation = bundle_io.ValidationData.of(val_ds, fit.val_probs)
    path = bundle_io.save_bundle(output, manifest, model.cpu().save, validation=validation, log=fit.history,
                                 overwrite=overwrite)
    log(f"[done] {path} in {seconds:.0f}s; validation macro-F1 {results['validation']['macro_f1']:.4f} "
        f"(best epoch {fit.best_epoch}); peak RSS {peak_rss_mb():.0f} MiB")
    report.emit("done", bundle=str(path), seconds=round(seconds, 1), val_macro_f1=results["validation"]["macro_f1"])
    world.wait()
    return path
