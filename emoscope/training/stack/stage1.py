"""Stage 1 of the stack: fine-tune each base encoder, on all training texts and on each fold's rest.

With ``stack.folds = k`` every encoder with ``fine_tune = true`` gets k+1 models: ``full``
(trained on every training text; it reads validation, eval and new texts, unless
``stack.new_text_reader = "fold"`` gives that role to ``fold-1``) and ``fold-i`` (trained on the
other folds; it reads fold i's training texts): out-of-fold stacking. With
``folds = 0`` (naive stacking) only ``full``. Encoders with ``fine_tune = false`` keep their
pretrained weights. Each finished model lands atomically in the recipe's work folder, under a key
of its own encoder's settings, the stage-1 settings and the training data, so an interrupted run
resumes where it stopped and adding an encoder retrains only the new one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from emoscope import progress as run_progress  # (the `progress` parameters switch the bars)
from emoscope.config import EncoderConfig, LossConfig, RunConfig
from emoscope.data import Dataset, TrainingData, iterative_stratified_split
from emoscope.distributed import SINGLE, World, save_alone
from emoscope.encoders import cache_dir, load_encoder
from emoscope.errors import ConfigError
from emoscope.fsutil import atomic_directory
from emoscope.models import EncoderClassifier
from emoscope.models.fingerprint import weights_fingerprint
from emoscope.models.runtime import peak_gpu_mb, peak_rss_mb
from emoscope.text import NormalizerConfig
from emoscope.training.classifier import FitResult, fit_classifier
from emoscope.training.run import Logger
from emoscope.training.stack.embeddings import known_fingerprints, remember_fingerprint, source_stamp
from emoscope.words import WordEncoder, read_words, text_key


@dataclass
class StackTexts:
    """Every split's texts as the stack reads them: the shared words (cut to ``stack.max_words``)
    and each text's key. Stage 1 records the keys each model was trained on; stage 2 embeds the
    words. Splits: ``train``, ``validation`` and (when the recipe has one) ``eval``; stage 2 also
    reads ``train-naive`` (the training texts, for the naive variant)."""

    words: dict[str, list[list[str]]]
    keys: dict[str, list[str]]

    @classmethod
    def read(cls, config: RunConfig, data: TrainingData) -> StackTexts:
        splits = (("train", data.train), ("validation", data.validation), ("eval", data.eval))
        words = {split: [read_words(t, config.text, config.stack.max_words).model_words for t in ds.texts]
                 for split, ds in splits if ds is not None}
        return cls(words, {split: [text_key(w) for w in ws] for split, ws in words.items()})

    @staticmethod
    def source(split: str) -> str:
        """The split whose texts ``split`` reads (``train-naive`` reads the training texts)."""
        return "train" if split == "train-naive" else split

    def count(self, split: str) -> int:
        return len(self.keys[self.source(split)])


@dataclass
class StageOneModel:
    """One instance of a base encoder after stage 1: pretrained (``role = "pretrained"``, no
    folder), fine-tuned on all training texts (``full``) or on all but one fold (``fold-i``),
    with the keys of the texts it was trained on."""

    encoder: str
    role: str
    folder: Path | None
    trained_on: frozenset[str]
    source: str
    pooling: str

    @classmethod
    def pretrained(cls, enc_cfg: EncoderConfig) -> StageOneModel:
        return cls(enc_cfg.label, "pretrained", None, frozenset(), enc_cfg.source, enc_cfg.pooling)

    def info(self) -> dict[str, Any]:
        """The fine-tuned model's ``info.json`` (what it was trained on, its history and scores)."""
        return json.loads((self.folder / "info.json").read_text(encoding="utf-8"))

    def fingerprint(self) -> str | None:
        """The weights fingerprint without loading the model, when it is known (else None)."""
        if self.folder is not None:
            return self.info().get("fingerprint")
        return known_fingerprints().get(source_stamp(self.source) or "")

    def remember(self, fingerprint: str) -> None:
        """Record a fingerprint computed by loading the model, for the next run: in the registry
        for a pretrained source, in ``info.json`` for a stage-1 model from an older run."""
        if self.folder is None:
            remember_fingerprint(self.source, fingerprint)
            return
        info = {**self.info(), "fingerprint": fingerprint}
        tmp = self.folder / f".info.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.folder / "info.json")

    def scores(self) -> dict[str, Any]:
        """A fine-tuned ``full`` model's validation (and eval) probabilities, and its ``info``."""
        return {**load_file(str(self.folder / "probs.safetensors")), "info": self.info()}

    def load(self) -> tuple[Any, nn.Module]:
        """``(tokenizer, encoder)``."""
        return load_encoder(self.source if self.folder is None else str(self.folder / "encoder"))

    def load_with_head(self, normalizer: NormalizerConfig, max_length: int, max_words: int,
                       prefix: str) -> tuple[WordEncoder, nn.Module, nn.Module | None]:
        """``(word encoder, encoder, classifier head)``; the head is None for a pretrained encoder."""
        if self.folder is None:
            tokenizer, encoder = load_encoder(self.source)
            return WordEncoder(tokenizer, normalizer, max_length, max_words, prefix), encoder, None
        n_labels = self.info()["n_labels"]
        model = EncoderClassifier.load(self.folder, n_labels, self.pooling, normalizer, max_length, prefix, max_words)
        return model.word_encoder, model.encoder, model.head


def fold_assignments(labels: np.ndarray, keys: Sequence[str], k: int, seed: int) -> np.ndarray:
    """Label-stratified fold number (0..k-1) per example; copies of a text share a fold."""
    n = len(labels)
    if n < k:
        raise ConfigError(f"stack.folds = {k} needs at least {k} training texts, got {n}")
    folds = np.full(n, k - 1, dtype=np.int64)
    remaining = np.arange(n)
    for f in range(k - 1):
        _, take = iterative_stratified_split(labels[remaining], test_size=1.0 / (k - f), seed=seed + f)
        take = np.asarray(sorted(take))
        folds[remaining[take]] = f
        remaining = np.setdiff1d(remaining, remaining[take])
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        folds[i] = first.setdefault(key, int(folds[i]))
    return folds


def work_folder(config: RunConfig) -> Path:
    """Where a stacked recipe keeps its stage-1 models (each under a key of its own settings)."""
    return cache_dir() / "stack-work" / config.name


def stage1_dir(work: Path, config: RunConfig, enc_cfg: EncoderConfig, train_ds: Dataset) -> Path:
    """One folder per (encoder settings, stage-1 settings, training data): a model stays reusable
    when other encoders are added to or dropped from the recipe."""
    encoder = {k: v for k, v in dataclasses.asdict(enc_cfg).items()
               if k != "name" and not (k == "seed" and v is None) and not (k == "train_layers" and v == 0)}
    data = config.data.to_dict()
    if not config.stack.finetune_on_extra:  # stage 1 never reads the extra data: the same models as without it
        data.pop("extra_train", None)
    relevant = {"encoder": encoder, "training": dataclasses.asdict(config.training), "text": config.text.to_dict(),
                "folds": config.stack.folds, "finetune_loss": config.stack.finetune_loss,
                "train": train_ds.fingerprint(), "validation": data}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]
    return work / "stage1" / f"{enc_cfg.label}-{digest}"


def _indented(log: Logger, message: str) -> None:
    log(f"    {message}")


def _save_finished(folder: Path, fit: FitResult, probs: dict[str, np.ndarray], info: dict[str, Any],
                   device: torch.device, started: float) -> None:
    """Write one finished stage-1 model, its probabilities and ``info.json``, atomically."""
    save_alone(fit.model)  # stage 1 spread over processes: each saves the models it trained
    with atomic_directory(folder) as tmp:
        fit.model.cpu().save(tmp)
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in probs.items()}, str(tmp / "probs.safetensors"))
        info = {**info, "best_epoch": fit.best_epoch, "fingerprint": weights_fingerprint(fit.model.encoder),
                "thresholds": [float(x) for x in fit.thresholds], "history": fit.history,
                "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                **peak_gpu_mb(device), "device": str(device)}
        (tmp / "info.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")


def finetune(config: RunConfig, enc_cfg: EncoderConfig, role: str, train_ds: Dataset, val_ds: Dataset,
             eval_ds: Dataset | None, keys: Sequence[str], root: Path, *, device: torch.device, log: Logger,
             progress: bool, position: tuple[int, int] = (1, 1)) -> StageOneModel:
    """Fine-tune (or reuse a finished) stage-1 model on ``train_ds`` (whose text keys are ``keys``),
    in ``root / role``; ``position`` = (this model's number, how many stage 1 fits) for the report."""
    name = enc_cfg.label
    folder = root / role
    trained_on = frozenset(keys)
    keys_digest = hashlib.sha256("\n".join(sorted(trained_on)).encode()).hexdigest()[:24]
    model = StageOneModel(name, role, folder, trained_on, enc_cfg.source, enc_cfg.pooling)
    reused = (folder / "info.json").exists() and model.info().get("trained_on_digest") == keys_digest
    report = run_progress.current()
    report.emit("model", encoder=name, role=role, index=position[0], of=position[1], texts=len(train_ds),
                reused=reused)
    if reused:
        log(f"[stage 1] {name}/{role}: reusing the finished model in {folder}")
        return model
    started = time.perf_counter()
    log(f"[stage 1] {name}/{role}: fine-tuning on {len(train_ds)} texts")
    fit = fit_classifier(config, enc_cfg, train_ds, val_ds, loss=LossConfig(name=config.stack.finetune_loss),
                         progress=progress, log=functools.partial(_indented, log), device=device)
    probs = {"validation": fit.val_probs}
    if eval_ds is not None and role == "full":
        probs["eval"] = fit.model.predict_proba(eval_ds.texts)
    info = {"encoder": name, "role": role, "n_labels": len(train_ds.label_names), "n_train": len(train_ds),
            "trained_on_digest": keys_digest, "trained_on": sorted(trained_on)}
    _save_finished(folder, fit, probs, info, device, started)
    fit.model.to("cpu")
    best_epoch = fit.best_epoch
    del fit
    log(f"[stage 1] {name}/{role}: done in {time.perf_counter() - started:.0f}s")
    report.emit("model_done", encoder=name, role=role, best_epoch=best_epoch,
                seconds=round(time.perf_counter() - started, 1))
    return model


@dataclass
class StageOne:
    """What stage 1 leaves: per encoder, the model that goes into the bundle and reads new texts
    (``full``, ``fold-1`` with ``stack.new_text_reader = "fold"``, or the pretrained one) and,
    out-of-fold, the fold models; each fine-tuned encoder's ``full`` model (it reads the naive
    variant's training texts); the fold of each training text; each fine-tuned encoder's own
    validation/eval probabilities (its ``full`` classifier's)."""

    models: dict[str, StageOneModel]
    fold_models: dict[str, list[StageOneModel]]
    folds: np.ndarray | None
    single_scores: dict[str, dict[str, Any]]
    seconds: float
    peak_rss_mb: float
    full_models: dict[str, StageOneModel] = dataclasses.field(default_factory=dict)


@dataclass
class Fit:
    """One stage-1 fine-tune to do: an encoder, its role (``full`` or ``fold-i``), the texts it
    trains on (and their keys), the eval set it scores (``full`` only), its folder's parent."""

    enc_cfg: EncoderConfig
    role: str
    train: Dataset
    keys: list[str]
    eval: Dataset | None
    root: Path


def finetuned_on(config: RunConfig, data: TrainingData) -> Dataset:
    """The training texts stage 1 fine-tunes on: all of them, or without the extra data when
    ``stack.finetune_on_extra`` is false (they come first in ``data.train``)."""
    return data.train if config.stack.finetune_on_extra or data.own_train is None else data.own_train


def stack_folds(config: RunConfig, data: TrainingData, train_keys: list[str]) -> np.ndarray | None:
    """The fold of each training text (None for naive stacking). When stage 1 leaves the extra
    data out, the texts it fine-tunes on are split exactly as without the extra data (so those
    models are reused) and the extra texts get folds of their own, for the text bases."""
    k, seed = config.stack.folds, config.training.seed
    if k < 2:
        return None
    n_own = len(finetuned_on(config, data))
    if n_own == len(data.train):
        return fold_assignments(data.train.labels, train_keys, k, seed)
    folds = np.concatenate([fold_assignments(data.train.labels[:n_own], train_keys[:n_own], k, seed),
                            fold_assignments(data.train.labels[n_own:], train_keys[n_own:], k, seed)
                            if len(data.train) - n_own >= k else np.arange(len(data.train) - n_own) % k])
    first: dict[str, int] = {}
    for i, key in enumerate(train_keys):  # a text in both keeps its fold in the fine-tuned part
        folds[i] = first.setdefault(key, int(folds[i]))
    return folds


def plan_fits(config: RunConfig, data: TrainingData, train_keys: list[str], folds: np.ndarray | None,
              work: Path) -> list[Fit]:
    """Every fine-tune of stage 1, in recipe order: per fine-tuned encoder ``full``, then its folds."""
    train = finetuned_on(config, data)
    keys, folds = train_keys[:len(train)], None if folds is None else folds[:len(train)]
    fits = []
    for enc_cfg in config.encoders:
        if not enc_cfg.fine_tune:
            continue
        root = stage1_dir(work, config, enc_cfg, train)
        fits.append(Fit(enc_cfg, "full", train, keys, data.eval, root))
        for f in range(0 if folds is None else config.stack.folds):
            idx = np.flatnonzero(folds != f)
            fits.append(Fit(enc_cfg, f"fold-{f + 1}", train.subset(idx), [keys[j] for j in idx], None, root))
    return fits


def run_stage1(config: RunConfig, data: TrainingData, texts: StackTexts, work: Path, *, device: torch.device,
               log: Logger, progress: bool, world: World = SINGLE) -> StageOne:
    """Fine-tune (or reuse) every encoder's stage-1 models, in recipe order.

    With several processes each first fine-tunes every ``size``-th fit (they are independent and
    land in the work folder one by one, so a killed run resumes as a serial one does); after all
    are done every process walks the list as a serial run does, reusing them."""
    started = time.perf_counter()
    train_keys = texts.keys["train"]
    folds = stack_folds(config, data, train_keys)
    fits = plan_fits(config, data, train_keys, folds, work)
    run_progress.current().emit("stage", name="fine-tune", index=1, of=3)
    if world.distributed:
        for i in world.mine(len(fits)):
            fit = fits[i]
            finetune(config, fit.enc_cfg, fit.role, fit.train, data.validation, fit.eval, fit.keys, fit.root,
                     device=device, log=log, progress=progress, position=(int(i) + 1, len(fits)))
        world.wait()
    models = {e.label: StageOneModel.pretrained(e) for e in config.encoders if not e.fine_tune}
    fold_models: dict[str, list[StageOneModel]] = {}
    single_scores: dict[str, dict[str, Any]] = {}
    for i, fit in enumerate(fits):
        name = fit.enc_cfg.label
        model = finetune(config, fit.enc_cfg, fit.role, fit.train, data.validation, fit.eval, fit.keys, fit.root,
                         device=device, log=log, progress=progress, position=(i + 1, len(fits)))
        if fit.role == "full":
            models[name], single_scores[name] = model, model.scores()
        else:
            fold_models.setdefault(name, []).append(model)
    full_models = {name: models[name] for name in single_scores}
    if config.stack.new_text_reader == "fold":
        models.update((name, fold_models[name][0]) for name in fold_models)
    models = {e.label: models[e.label] for e in config.encoders}  # recipe order
    return StageOne(models, fold_models, folds, single_scores, time.perf_counter() - started, peak_rss_mb(),
                    full_models)
