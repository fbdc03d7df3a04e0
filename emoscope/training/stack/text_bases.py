"""The stack's bases that read the text itself (``[[bases]]``, TF-IDF): their logits for stage 3.

A TF-IDF base (:class:`~emoscope.tfidf.TfidfModel`) reads the words the stack reads, joined by
spaces (:func:`base_text`: the same at training and at prediction time). As for a fine-tuned
encoder, which model reads which text follows out-of-fold stacking:

* a training text in fold i ← the model fit on the other folds (``fold-i``); the folds are the
  stack's own (``stack.folds``), or 5 label-stratified folds when ``stack.folds = 0``, so the
  meta-learner never learns to trust a base's scores for texts it memorised;
* a validation or eval text ← the model fit on every training text (``full``), the one that goes
  into the bundle, unless it is also a training text: then ← the fold model that held it out;
* ``train-naive`` (the naive ablation) ← ``full`` on the training texts it was fit on.

Every read passes the same leakage gate as the encoders'
(:func:`~emoscope.training.stack.leakage.check_not_trained_on`). Fitting takes seconds, so
nothing is cached.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emoscope.config import BaseConfig, RunConfig
from emoscope.data import TrainingData
from emoscope.tfidf import TfidfModel, text_of_words
from emoscope.training.run import Logger
from emoscope.training.stack.embeddings import RaggedRows, one_row_per_text
from emoscope.training.stack.leakage import check_not_trained_on
from emoscope.training.stack.stage1 import StackTexts, fold_assignments

NAIVE_FOLDS = 5
"""Folds of a text base's out-of-fold logits when the stack itself is naive (``stack.folds = 0``)."""


@dataclass
class BaseFit:
    """One fitted model of a text base and the keys of the texts it was fit on (``encoder`` and
    ``role`` name it in the leakage gate's message, as for a stage-1 model)."""

    encoder: str
    role: str
    trained_on: frozenset[str]
    model: TfidfModel


@dataclass
class TextBase:
    """A text base after fitting: the model that goes into the bundle (``full``), the fold
    models, the fold of each training text, and its logits per split, one row per text
    (``train`` out of fold, ``train-naive``, ``validation``, ``eval``)."""

    config: BaseConfig
    full: BaseFit
    fold_fits: list[BaseFit]
    folds: np.ndarray
    logits: dict[str, RaggedRows]
    seconds: float


def text_base_folds(config: RunConfig, data: TrainingData, keys: Sequence[str], folds: np.ndarray | None) -> np.ndarray:
    """The stack's folds of the training texts, or :data:`NAIVE_FOLDS` of the base's own."""
    return folds if folds is not None else fold_assignments(data.train.labels, keys, NAIVE_FOLDS, config.training.seed)


def _fit(base_cfg: BaseConfig, role: str, docs: list[str], keys: list[str], data: TrainingData,
         idx: np.ndarray) -> BaseFit:
    mask = data.train.label_mask
    model = TfidfModel.fit([docs[i] for i in idx], data.train.labels[idx], None if mask is None else mask[idx],
                           min_df=base_cfg.min_df, C=base_cfg.C)
    return BaseFit(base_cfg.label, role, frozenset(keys[i] for i in idx), model)


def _read(fit: BaseFit, docs: list[str], keys: list[str], positions: np.ndarray, out: np.ndarray,
          allow_seen: bool = False) -> None:
    """``fit``'s logits of the texts at ``positions`` into ``out``, through the leakage gate."""
    if len(positions) == 0:
        return
    check_not_trained_on(fit, [keys[p] for p in positions], allow_seen=allow_seen)
    out[positions] = fit.model.logits([docs[p] for p in positions])


def fit_text_base(base_cfg: BaseConfig, config: RunConfig, data: TrainingData, texts: StackTexts,
                  folds: np.ndarray | None, log: Logger = print) -> TextBase:
    """Fit one text base on the training texts (all, and each fold's rest) and read every split
    with it as the module docstring says."""
    started = time.perf_counter()
    keys = texts.keys["train"]
    docs = [text_of_words(w) for w in texts.words["train"]]
    folds = text_base_folds(config, data, keys, folds)
    n_labels = len(data.train.label_names)
    full = _fit(base_cfg, "full", docs, keys, data, np.arange(len(docs)))
    fold_fits = [_fit(base_cfg, f"fold-{f + 1}", docs, keys, data, np.flatnonzero(folds != f))
                 for f in range(int(folds.max()) + 1)]
    out: dict[str, np.ndarray] = {}
    out["train"] = np.zeros((len(docs), n_labels))
    for f, fit in enumerate(fold_fits):
        _read(fit, docs, keys, np.flatnonzero(folds == f), out["train"])
    out["train-naive"] = np.zeros((len(docs), n_labels))
    _read(full, docs, keys, np.arange(len(docs)), out["train-naive"], allow_seen=True)
    fold_of = dict(zip(keys, folds))
    for split in ("validation", "eval"):
        if split not in texts.keys:
            continue
        split_keys = texts.keys[split]
        split_docs = [text_of_words(w) for w in texts.words[split]]
        out[split] = np.zeros((len(split_docs), n_labels))
        seen = np.asarray([k in full.trained_on for k in split_keys], dtype=bool)
        _read(full, split_docs, split_keys, np.flatnonzero(~seen), out[split])
        for f, fit in enumerate(fold_fits):
            held_out = np.asarray([fold_of.get(k) == f for k in split_keys], dtype=bool)
            _read(fit, split_docs, split_keys, np.flatnonzero(seen & held_out), out[split])
    seconds = time.perf_counter() - started
    log(f"[stage 2] {base_cfg.label} ({base_cfg.kind}): {len(fold_fits)} fold fits + 1 on all {len(docs)} training "
        f"texts, {seconds:.1f}s")
    logits = {split: one_row_per_text(v.astype(np.float32)) for split, v in out.items()}
    return TextBase(base_cfg, full, fold_fits, folds, logits, seconds)


def fit_text_bases(config: RunConfig, data: TrainingData, texts: StackTexts, folds: np.ndarray | None,
                   log: Logger = print) -> dict[str, TextBase]:
    """Every ``[[bases]]`` entry of the recipe, by name, in recipe order."""
    return {b.label: fit_text_base(b, config, data, texts, folds, log) for b in config.bases}
