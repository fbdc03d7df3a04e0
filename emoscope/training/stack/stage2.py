"""Stage 2 of the stack: every split's texts read by the stage-1 models, as cached word vectors.

Each encoder's sub-word vectors are pooled onto the project's shared words, so the K encoders'
vectors line up word by word whatever their tokenizers. Which model reads which text:

* out-of-fold (``folds > 1``), fine-tuned encoder: a training text in fold i ← ``fold-i`` (one
  that stage 1 left out, ``stack.finetune_on_extra = false``, ← the new-text reader, which never
  saw it); a validation/eval text ← the new-text reader, unless it is also a training text: then
  ← the fold model that held it out; and, for the naive ablation, every training text ← ``full``
  (``train-naive``). The new-text reader is ``full``, or ``fold-1`` with
  ``stack.new_text_reader = "fold"`` (it reads fold 1's training texts in either case);
* naive (``folds = 0``) or frozen encoder: every text ← the one model.

Every read passes the leakage gate (:func:`~emoscope.training.stack.leakage.check_not_trained_on`).
With ``meta.base_logits`` the fine-tuned classifiers' logits per text are taken from the same
forward pass and cached beside the word vectors.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoscope import progress as run_progress  # (prepare_stack's `progress` switches the bars)
from emoscope.config import EncoderConfig, RunConfig
from emoscope.data import TrainingData
from emoscope.distributed import SINGLE, World
from emoscope.encoders import resolve_source, text_prefix
from emoscope.models import default_precision
from emoscope.models.fingerprint import weights_fingerprint
from emoscope.models.runtime import peak_rss_mb
from emoscope.training.run import Logger
from emoscope.training.stack.embeddings import (EmbeddingCache, RaggedRows, embed_words, embeddings_cache,
                                                encoder_key, head_key, one_row_per_text)
from emoscope.training.stack.leakage import check_not_trained_on
from emoscope.training.stack.stage1 import StackTexts, StageOne, StageOneModel, run_stage1, work_folder
from emoscope.training.stack.text_bases import TextBase, fit_text_bases
from emoscope.training.top_layers import LowerLayerStates
from emoscope.words import Encoded, WordEncoder

Pieces = dict[str, list[tuple[RaggedRows, np.ndarray]]]
"""split → the rows each model read for it, with the positions of their texts in the split."""


@dataclass
class StackInputs:
    """What stage 3 reads: per encoder, word vectors of each split (the training split both
    out-of-fold, when folds > 1, and naive), and what stage 1 left."""

    encoders: list[str]
    input_sizes: list[int]
    train_oof: list[RaggedRows] | None
    train_naive: list[RaggedRows]
    validation: list[RaggedRows]
    eval: list[RaggedRows] | None
    base_models: dict[str, StageOneModel]  # encoder name -> the model that goes into the bundle
    single_scores: dict[str, dict[str, Any]]  # encoder name -> stage-1 full model's validation/eval probs
    stage_seconds: dict[str, float]
    stage_peak_rss_mb: dict[str, float]
    # fine-tuned encoder name -> split ("train", "train-naive", "validation", "eval") -> logits of
    # its stage-1 classifier, one row per text (out-of-fold for "train"); empty unless meta.base_logits
    base_logits: dict[str, dict[str, RaggedRows]] = dataclasses.field(default_factory=dict)
    # [[bases]] name -> its fits and logits per split (out-of-fold for "train"); the meta-learner
    # adds them, after the encoders' classifiers, to its weighted sum of base logits
    text_bases: dict[str, TextBase] = dataclasses.field(default_factory=dict)

    def select(self, names: Sequence[str], split: str, naive: bool = False) -> RaggedRows:
        table = {"train": (self.train_naive if naive or self.train_oof is None else self.train_oof),
                 "validation": self.validation, "eval": self.eval}[split]
        if table is None:
            raise ValueError(f"no {split} embeddings")
        return RaggedRows.hstack([table[self.encoders.index(n)] for n in names])

    def base_names(self, names: Sequence[str]) -> list[str]:
        """Of ``names``, the encoders whose stage-1 classifier logits the meta-learner can read."""
        return [n for n in names if n in self.base_logits]

    def select_base(self, names: Sequence[str], split: str, naive: bool = False,
                    text_bases: Sequence[str] | None = None) -> np.ndarray | None:
        """``[n, (len(base_names) + len(text_bases)) * L]``: the base classifiers' logits, then the
        text bases' (``None``: every one), concatenated; None if none. A text base's training
        logits are out of fold unless ``naive`` (whatever ``stack.folds``)."""
        chosen = self.base_names(names)
        key = "train-naive" if split == "train" and (naive or self.train_oof is None) else split
        parts = [self.base_logits[n][key].flat for n in chosen]
        text_key_ = "train-naive" if split == "train" and naive else split
        parts += [self.text_bases[b].logits[text_key_].flat for b in (self.text_bases if text_bases is None else text_bases)]
        return np.concatenate(parts, axis=1) if parts else None


@dataclass
class ReadJob:
    """One stage-1 model reading some texts of one split (``train-naive``: the training texts,
    read by the model trained on them, for the naive variant)."""

    model: StageOneModel
    split: str
    positions: np.ndarray
    allow_seen: bool


def plan_reads(name: str, stage_one: StageOne, texts: StackTexts) -> list[ReadJob]:
    """Which model reads which texts of encoder ``name`` (see the module docstring)."""
    reader = stage_one.models[name]  # full, fold-1 (new_text_reader = "fold") or the pretrained model
    fold_models = stage_one.fold_models.get(name)
    folds = stage_one.folds
    jobs: list[ReadJob] = []
    for split, keys in texts.keys.items():
        if fold_models is None:
            # Frozen encoders saw no text; naive stacking lets the full model read its own.
            jobs.append(ReadJob(reader, split, np.arange(len(keys)), folds is None))
        elif split == "train":
            # A training text the new-text reader never saw (extra data left out of stage 1; with
            # fold-1 as the reader, fold 1's texts too) is read by it; every other one by the fold
            # model that held it out.
            seen = np.asarray([k in reader.trained_on for k in keys], dtype=bool)
            jobs += [ReadJob(model, "train", np.flatnonzero(seen & (folds == f)), False)
                     for f, model in enumerate(fold_models)]
            if not seen.all():
                jobs.append(ReadJob(reader, "train", np.flatnonzero(~seen), False))
        else:
            # A validation/eval text that also sits in the training data goes to the fold model
            # that held it out, so no encoder ever reads a text it was trained on.
            seen = np.asarray([k in reader.trained_on for k in keys], dtype=bool)
            jobs.append(ReadJob(reader, split, np.flatnonzero(~seen), False))
            fold_of = dict(zip(texts.keys["train"], folds))
            for f, model in enumerate(fold_models):
                held_out = np.asarray([fold_of.get(k) == f for k in keys])
                jobs.append(ReadJob(model, split, np.flatnonzero(seen & held_out), False))
    if fold_models is not None:
        jobs.append(ReadJob(stage_one.full_models[name], "train-naive", np.arange(len(texts.keys["train"])), True))
    return jobs


def by_model(jobs: Sequence[ReadJob]) -> list[list[ReadJob]]:
    """The jobs grouped by model, models in order of their first job: each model loads once."""
    groups: dict[int, list[ReadJob]] = {}
    for job in jobs:
        groups.setdefault(id(job.model), []).append(job)
    return list(groups.values())


class ModelReader:
    """One stage-1 model as stage 2 reads texts with it: loaded on first use (not at all when
    every text is cached), its cache keys, and — with ``meta.base_logits`` — the classifier
    logits taken from the word-vector pass, by text key, so a text that misses both caches goes
    through the encoder once."""

    def __init__(self, model: StageOneModel, enc_cfg: EncoderConfig, config: RunConfig, device: torch.device,
                 cache: EmbeddingCache):
        self.model, self.enc_cfg, self.device = model, enc_cfg, device
        self.normalizer, self.stack = config.text, config.stack
        self.batch_size = config.training.eval_batch_size
        self.with_head = config.meta.base_logits and model.folder is not None
        self._parts: tuple[WordEncoder, nn.Module, nn.Module | None] | None = None
        # a fine-tuned encoder whose frozen layers' output is stored (train_layers): batches start above them
        self.stored_states = self._stored_states if enc_cfg.train_layers and model.folder is not None else None
        self.cache = cache
        self._key: str | None = None
        self._spare_logits: dict[str, np.ndarray] = {}

    def parts(self) -> tuple[WordEncoder, nn.Module, nn.Module | None]:
        """The model's word encoder, encoder and head (None when pretrained), on the device."""
        if self._parts is None:
            we, encoder, head = self.model.load_with_head(self.normalizer, self.enc_cfg.max_length,
                                                          self.stack.max_words, text_prefix(self.enc_cfg.source))
            self._parts = (we, encoder.to(self.device), None if head is None else head.to(self.device).eval())
        return self._parts

    def _stored_states(self, encoded: list[Encoded]) -> LowerLayerStates:
        we, encoder, _ = self.parts()
        return LowerLayerStates(encoder, we, self.device, self.enc_cfg.train_layers, encoded, self.cache,
                                batch_size=self.batch_size)

    def key(self) -> str:
        """The cache key of this model's word vectors (loading it only when its fingerprint is unknown)."""
        if self._key is None:
            fingerprint = self.model.fingerprint()
            if fingerprint is None:
                fingerprint = weights_fingerprint(self.parts()[1])
                self.model.remember(fingerprint)
            self._key = encoder_key(fingerprint, self.enc_cfg, self.normalizer, self.stack,
                                    default_precision(self.device))
        return self._key

    def word_vectors(self, words: list[list[str]], keys: list[str], positions: list[int]) -> RaggedRows:
        """Word vectors of the texts at ``positions`` (of ``words``/``keys``), for the cache to keep."""
        we, encoder, head = self.parts()
        emb, logits = embed_words(encoder, we, [words[p] for p in positions], self.batch_size, self.device,
                                  self.stack.word_pooling, head=(head, self.enc_cfg.pooling) if self.with_head else None,
                                  stored_states=self.stored_states)
        if logits is not None:
            self._spare_logits.update((keys[p], logits.flat[row]) for row, p in enumerate(positions))
        return emb

    def logits(self, words: list[list[str]], keys: list[str], positions: list[int]) -> RaggedRows:
        """The classifier's logits of the texts at ``positions``: from the word-vector pass when it
        read them all, else from a pass of their own."""
        if all(keys[p] in self._spare_logits for p in positions):
            return one_row_per_text(np.stack([self._spare_logits[keys[p]] for p in positions]).astype(np.float32))
        we, encoder, head = self.parts()
        return embed_words(encoder, we, [words[p] for p in positions], self.batch_size, self.device,
                           head=(head, self.enc_cfg.pooling), stored_states=self.stored_states)[1]


def read_with(reader: ModelReader, jobs: Sequence[ReadJob], texts: StackTexts, cache: EmbeddingCache,
              log: Logger) -> tuple[Pieces, Pieces]:
    """Run one model's jobs through the cache: the word vectors and (with a head) the logits it read.
    Each read is reported (``embed_start`` … ``embedded``, with the texts served by the cache)."""
    pieces: Pieces = {}
    logit_pieces: Pieces = {}
    model = reader.model
    report = run_progress.current()
    for job in jobs:
        if len(job.positions) == 0:
            continue
        source = texts.source(job.split)
        keys = [texts.keys[source][p] for p in job.positions]
        words = [texts.words[source][p] for p in job.positions]
        check_not_trained_on(model, keys, allow_seen=job.allow_seen)
        where = {"encoder": model.encoder, "role": model.role, "split": job.split, "texts": len(keys)}
        report.emit("embed_start", **where)
        started = time.perf_counter()
        emb, hits = cache.get(reader.key(), keys, functools.partial(reader.word_vectors, words, keys))
        log(f"[stage 2] {model.encoder}/{model.role} → {job.split}: {len(job.positions)} texts ({hits} from the cache)")
        pieces.setdefault(job.split, []).append((emb, job.positions))
        if reader.with_head:
            logits, _ = cache.get(head_key(reader.key(), reader.enc_cfg.pooling), keys,
                                  functools.partial(reader.logits, words, keys))
            logit_pieces.setdefault(job.split, []).append((logits, job.positions))
        report.emit("embedded", **where, cached=hits, seconds=round(time.perf_counter() - started, 3))
    return pieces, logit_pieces


def embed_encoder(enc_cfg: EncoderConfig, config: RunConfig, stage_one: StageOne, texts: StackTexts,
                  cache: EmbeddingCache, device: torch.device,
                  log: Logger) -> tuple[dict[str, RaggedRows], dict[str, RaggedRows]]:
    """One encoder's rows of every split: word vectors and (with a fine-tuned head and
    ``meta.base_logits``) the classifier's logits, each split assembled from its models' pieces."""
    pieces: Pieces = {}
    logit_pieces: Pieces = {}
    for jobs in by_model(plan_reads(enc_cfg.label, stage_one, texts)):
        reader = ModelReader(jobs[0].model, enc_cfg, config, device, cache)
        read, read_logits = read_with(reader, jobs, texts, cache, log)
        del reader  # free the model before the next one loads
        for split, parts in read.items():
            pieces.setdefault(split, []).extend(parts)
        for split, parts in read_logits.items():
            logit_pieces.setdefault(split, []).extend(parts)
    vectors = {split: RaggedRows.gather(p, texts.count(split)) for split, p in pieces.items()}
    logits = {split: RaggedRows.gather(p, texts.count(split)) for split, p in logit_pieces.items()}
    if logits:
        logits.setdefault("train-naive", logits["train"])
    return vectors, logits


def run_stage2(config: RunConfig, data: TrainingData, texts: StackTexts, stage_one: StageOne,
               device: torch.device, log: Logger) -> StackInputs:
    """Read every split with every encoder's stage-1 models (through the cache)."""
    started = time.perf_counter()
    run_progress.current().emit("stage", name="embed", index=2, of=3)
    cache = embeddings_cache(config)
    out: dict[str, dict[str, RaggedRows]] = {}
    base_logits: dict[str, dict[str, RaggedRows]] = {}
    for enc_cfg in config.encoders:
        out[enc_cfg.label], logits = embed_encoder(enc_cfg, config, stage_one, texts, cache, device, log)
        if logits:
            base_logits[enc_cfg.label] = logits
    names = [e.label for e in config.encoders]
    return StackInputs(
        encoders=names, input_sizes=[out[n]["validation"].dim for n in names],
        train_oof=[out[n]["train"] for n in names] if stage_one.folds is not None else None,
        train_naive=[out[n].get("train-naive", out[n]["train"]) for n in names],
        validation=[out[n]["validation"] for n in names],
        eval=[out[n]["eval"] for n in names] if data.eval is not None else None,
        base_models=stage_one.models, single_scores=stage_one.single_scores,
        stage_seconds={"finetune": stage_one.seconds, "embed": time.perf_counter() - started},
        stage_peak_rss_mb={"finetune": stage_one.peak_rss_mb, "embed": peak_rss_mb()},
        base_logits=base_logits,
    )


def prepare_stack(config: RunConfig, data: TrainingData, *, device: torch.device, work: Path | None = None,
                  progress: bool = True, log: Logger = print, world: World = SINGLE) -> StackInputs | None:
    """Stages 1 and 2: fine-tune (or reuse) the base encoders and read every split with them.

    With several processes stage 1 is spread (:func:`run_stage1`), then each process reads every
    ``size``-th encoder's texts into the embeddings cache (which takes concurrent writers); once
    all are done the main process assembles stage 2 from the cache and gets the inputs, the
    others get None."""
    for enc_cfg in config.encoders:  # an encoder that is not installed fails now, not after hours of stage 1
        resolve_source(enc_cfg.source)
    texts = StackTexts.read(config, data)
    stage_one = run_stage1(config, data, texts, work or work_folder(config), device=device, log=log,
                           progress=progress, world=world)
    if world.distributed:
        cache = embeddings_cache(config)
        for i in world.mine(len(config.encoders)):
            embed_encoder(config.encoders[int(i)], config, stage_one, texts, cache, device, log)
        world.wait()
        if not world.is_main:
            return None
    stacked = run_stage2(config, data, texts, stage_one, device, log)
    stacked.text_bases = fit_text_bases(config, data, texts, stage_one.folds, log)
    return stacked
