"""Fine-tuning one encoder with a multi-label head, from a recipe to a bundle on disk.

``train(config, output)`` loads the data, fine-tunes with AdamW (warm-up + cosine
schedule), evaluates validation macro-F1 after every epoch (with per-class thresholds tuned
on the validation set), stops early when it stops improving, restores the best epoch, and
writes a bundle. Batches are bucketed by token length so CPU time follows real text
lengths rather than the longest text in a random batch.
"""

from __future__ import annotations

import math
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from emoscope import bundle as bundle_io
from emoscope.bundle import ValidationData
from emoscope.config import EncoderConfig, LossConfig, RunConfig
from emoscope.data import Dataset, load_training_data
from emoscope.encoders import SOURCES, load_encoder, text_prefix
from emoscope.errors import ConfigError, DataError
from emoscope.losses import build_loss, class_frequencies, per_class_bce
from emoscope.metrics import compute_metrics
from emoscope.manifest import EncoderEntry, ModelSpec, build_manifest
from emoscope.models import EncoderClassifier, Runtime, autocast_context, default_precision, pick_device
from emoscope.models.runtime import peak_gpu_mb, peak_rss_mb
from emoscope.words import WordEncoder
from emoscope.thresholds import tune_thresholds

Logger = Callable[[str], None]


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


def choose_thresholds(config: RunConfig, labels: np.ndarray, probs: np.ndarray,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """Per-class thresholds tuned on validation probabilities, or the fixed fallback for all."""
    if config.thresholds.tune:
        return tune_thresholds(labels, probs, label_mask=mask, fallback=config.thresholds.fallback)
    return np.full(labels.shape[1], config.thresholds.fallback)


def loss_options(config: RunConfig | LossConfig) -> dict[str, Any]:
    """The loss options that the chosen loss takes (from a recipe or a ``[loss]`` section)."""
    loss = config.loss if isinstance(config, RunConfig) else config
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


def _optimizer(model: EncoderClassifier, config: RunConfig) -> torch.optim.Optimizer:
    t = config.training
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
        {"params": decay, "weight_decay": t.weight_decay, "lr": t.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": t.lr},
        {"params": head, "weight_decay": t.weight_decay, "lr": t.head_lr or t.lr},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


@dataclass
class FitResult:
    """A fine-tuned single-encoder classifier (best epoch restored) and how it got there."""

    model: EncoderClassifier
    history: list[dict[str, Any]]
    best_epoch: int
    val_probs: np.ndarray
    thresholds: np.ndarray


def fit_classifier(config: RunConfig, enc_cfg: EncoderConfig, train_ds: Dataset, val_ds: Dataset, *,
                   loss: LossConfig | None = None, progress: bool = True, log: Logger = print,
                   device: torch.device | None = None) -> FitResult:
    """Fine-tune one encoder with a linear head on ``train_ds``, early-stopping on ``val_ds``.

    ``enc_cfg.fine_tune = false`` trains the head only (a linear probe on frozen features).
    Used by :func:`train` and by stage 1 of the stacked ensemble (once per fold).
    """
    t = config.training
    seed = t.seed if enc_cfg.seed is None else enc_cfg.seed
    seed_everything(seed)
    loss = loss or config.loss
    device = device or pick_device(t.device)
    labels = train_ds.label_names
    if val_ds.labels.sum() == 0:
        raise DataError(f"the validation set {val_ds.name} has no positive labels; early stopping and thresholds need some")

    tokenizer, encoder = load_encoder(enc_cfg.source)
    word_encoder = WordEncoder(tokenizer, config.text, enc_cfg.max_length, prefix=text_prefix(enc_cfg.source))
    model = EncoderClassifier(encoder, word_encoder, n_labels=len(labels), pooling=enc_cfg.pooling,
                              dropout=enc_cfg.dropout, name=enc_cfg.label)
    if not enc_cfg.fine_tune:
        model.encoder.requires_grad_(False)
        log("[model] encoder frozen: only the head trains")
    elif enc_cfg.freeze_embeddings:
        frozen = model.freeze_word_embeddings()
        log(f"[model] word embeddings frozen ({frozen / 1e6:.1f}M parameters)")
    model.place(Runtime(device, None, t.eval_batch_size))

    t0 = time.perf_counter()
    train_ids = word_encoder.encode_texts(train_ds.texts)
    val_ids = word_encoder.encode_texts(val_ds.texts)
    truncated = sum(len(ids) >= enc_cfg.max_length for ids, _ in train_ids)
    log(f"[tokenise] {time.perf_counter() - t0:.1f}s; mean length {np.mean([len(ids) for ids, _ in train_ids]):.1f} tokens; "
        f"{truncated} training texts truncated at {enc_cfg.max_length}")

    loss_fn = build_loss(loss.name, train_ds.labels, train_ds.label_mask, **loss_options(loss)).to(device)
    optimizer = _optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_ds) / t.batch_size)
    total_steps = steps_per_epoch * t.epochs
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    rng = np.random.default_rng(seed)
    sample_weights = rare_label_sample_weights(train_ds.labels, train_ds.label_mask) if t.weighted_sampling else None
    targets_all = torch.as_tensor(train_ds.labels, dtype=torch.float32)
    # True = annotated; None when every dataset annotates every label (nothing to mask).
    mask_all = None if train_ds.label_mask is None else torch.as_tensor(train_ds.label_mask, dtype=torch.bool)
    lengths = [len(ids) for ids, _ in train_ids]

    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    history: list[dict[str, Any]] = []
    best_f1, best_epoch, best_state, stale = -1.0, 0, None, 0
    for epoch in range(1, t.epochs + 1):
        model.train()
        indices = None
        if sample_weights is not None:
            indices = rng.choice(len(train_ds), size=len(train_ds), replace=True, p=sample_weights / sample_weights.sum())
        batches = length_bucketed_batches(lengths, t.batch_size, rng, indices)
        epoch_start = time.perf_counter()
        loss_sum, class_loss_sum, seen = 0.0, torch.zeros(len(labels)), 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{t.epochs}", disable=not progress, leave=False, unit="batch")
        for idx in bar:
            batch = model.to_device([word_encoder.pad([train_ids[i] for i in idx])])
            targets = targets_all[idx].to(device)
            mask = None if mask_all is None else mask_all[idx].to(device)
            with autocast_context(device):
                logits, features = model(batch, return_features=True)
            loss = loss_fn(logits.float(), targets, mask=mask, features=features.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(idx)
            class_loss_sum += per_class_bce(logits.detach().float(), targets, mask).cpu() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        bar.close()
        val_probs = model.probs_of_encoded(val_ids)
        thresholds = choose_thresholds(config, val_ds.labels, val_probs, val_ds.label_mask)
        metrics = compute_metrics(val_ds.labels, val_probs, thresholds, label_names=labels, label_mask=val_ds.label_mask)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_loss_per_class": dict(zip(labels, (class_loss_sum / seen).tolist())),
            "val_macro_f1": metrics["macro_f1"],
            "val_micro_f1": metrics["micro_f1"],
            "val_macro_f1_at_0.5": compute_metrics(val_ds.labels, val_probs, 0.5, label_mask=val_ds.label_mask)["macro_f1"],
            "seconds": time.perf_counter() - epoch_start,
            "lr": scheduler.get_last_lr()[0],
        }
        history.append(row)
        per_class = " ".join(f"{k}={v:.3f}" for k, v in row["train_loss_per_class"].items())
        log(f"[epoch {epoch}] loss {row['train_loss']:.4f} | val macro-F1 {row['val_macro_f1']:.4f} "
            f"micro-F1 {row['val_micro_f1']:.4f} | {row['seconds']:.0f}s | per-class loss {per_class}")
        if metrics["macro_f1"] > best_f1 + 1e-6:
            best_f1, best_epoch, stale = metrics["macro_f1"], epoch, 0
            # Frozen weights never change: keeping only the rest saves a copy of the embedding matrix.
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                          if k not in frozen_names}
        else:
            stale += 1
            if stale >= t.patience:
                log(f"[early stop] no macro-F1 gain for {t.patience} epochs; best epoch {best_epoch}")
                break

    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    val_probs = model.probs_of_encoded(val_ids)
    thresholds = choose_thresholds(config, val_ds.labels, val_probs, val_ds.label_mask)
    return FitResult(model=model, history=history,
                     best_epoch=best_epoch, val_probs=val_probs, thresholds=thresholds)


def train(config: RunConfig, output: str | Path, *, overwrite: bool = False, progress: bool = True,
          log: Logger = print) -> Path:
    """Run a recipe end to end and write the bundle to ``output``; returns its path.

    A stacked recipe (one with a ``[stack]`` section) goes to :func:`emoscope.stack.train_stack`.
    """
    if config.kind == "stacked":
        from emoscope.stack import train_stack

        return train_stack(config, output, overwrite=overwrite, progress=progress, log=log)
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} already exists; choose another --output or pass --overwrite")
    started = time.perf_counter()
    enc_cfg = config.encoder
    device = pick_device(config.training.device)
    t = config.training

    data = load_training_data(config)
    train_ds, val_ds = data.train, data.validation
    labels = train_ds.label_names
    log(f"[data] train {len(train_ds)} ({train_ds.name}), validation {len(val_ds)} ({val_ds.name})"
        + (f", eval {len(data.eval)} ({data.eval.name})" if data.eval else "") + f"; labels: {', '.join(labels)}")
    fit = fit_classifier(config, enc_cfg, train_ds, val_ds, progress=progress, log=log, device=device)
    model = fit.model
    history, best_epoch = fit.history, fit.best_epoch
    val_probs, thresholds = fit.val_probs, fit.thresholds
    results = {"validation": compute_metrics(val_ds.labels, val_probs, thresholds, label_names=labels,
                                             label_mask=val_ds.label_mask)}
    if data.eval is not None:
        eval_probs = model.predict_proba(data.eval.texts)
        results["eval"] = {"data": data.eval.name,
                           **compute_metrics(data.eval.labels, eval_probs, thresholds, label_names=labels,
                                             label_mask=data.eval.label_mask)}
        log(f"[eval] {data.eval.name}: macro-F1 {results['eval']['macro_f1']:.4f} micro-F1 {results['eval']['micro_f1']:.4f}")
    seconds = time.perf_counter() - started
    encoder = model.encoder
    model_spec = ModelSpec(kind=EncoderClassifier.kind, path="model", pooling=enc_cfg.pooling,
                           max_length=enc_cfg.max_length, n_labels=len(labels),
                           encoders=[EncoderEntry(source=enc_cfg.source, offline_source=enc_cfg.source in SOURCES,
                                                  text_prefix=text_prefix(enc_cfg.source),
                                                  model_type=encoder.config.model_type,
                                                  hidden_size=encoder.config.hidden_size)])
    training = {"best_epoch": best_epoch, "epochs_run": len(history), "seconds": round(seconds, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1), **peak_gpu_mb(device), "device": str(device),
                "precision": default_precision(device),
                "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    manifest = build_manifest(config, data, thresholds, model_spec, results, training)
    validation = ValidationData(texts=list(val_ds.texts), labels=val_ds.labels, probs=val_probs, ids=list(val_ds.ids),
                                mask=val_ds.label_mask)
    path = bundle_io.save_bundle(output, manifest, lambda folder: model.cpu().save(folder),
                                 validation=validation, log=history, overwrite=overwrite)
    log(f"[done] {path} in {seconds:.0f}s; validation macro-F1 {results['validation']['macro_f1']:.4f} "
        f"(best epoch {best_epoch}); peak RSS {peak_rss_mb():.0f} MiB")
    return path
