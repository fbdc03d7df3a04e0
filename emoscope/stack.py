"""The stacked ensemble: K base encoders pooled onto shared words, read by a Bi-LSTM meta-learner.

After "Improving Arabic Multi-Label Emotion Classification using Stacked Embeddings and Hybrid
Loss Function" (arXiv 2410.03979). Three stages:

1. **Fine-tune** each base encoder with ``fine_tune = true`` (the single-encoder code of
   :func:`emoscope.training.fit_classifier`). With ``stack.folds = k`` it trains k+1 models per
   encoder: one on every training text (it embeds validation, eval and new texts) and one per
   fold on the other folds (it embeds that fold's training texts): out-of-fold stacking. With
   ``folds = 0`` (naive stacking) the full model embeds its own training texts. Encoders with
   ``fine_tune = false`` keep their pretrained weights (frozen mode). Finished models are kept in a
   work folder, so an interrupted run resumes where it stopped.
2. **Embed** every text once per encoder: sub-word vectors are pooled onto the project's shared
   word segmentation (``emoscope.text.prepare_words``), so the K encoders' vectors line up word by
   word whatever their tokenizers, and are concatenated per word. Word vectors are cached on disk,
   keyed by the encoder's weights and the text, so reruns and ablations reuse them.
3. **Meta-learner**: a Bi-LSTM over the stacked word sequence, pooled over words (attention,
   max or mean), then dense layers to one logit per label, trained with the recipe's loss
   (the hybrid loss by default) from the cache in seconds to minutes.

Every embedding of a training text goes through :func:`embed_texts`, which refuses
(``LeakageError``) to let a model embed a text it was trained on unless the caller asks for the
naive variant explicitly.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoscope import bundle as bundle_io
from emoscope.config import EncoderConfig, LossConfig, MetaConfig, RunConfig, ThresholdConfig
from emoscope.data import Dataset, data_summary, iterative_stratified_split, load_training_data
from emoscope.encoders import SOURCES, cache_dir, load_encoder, text_prefix
from emoscope.errors import BundleError, ConfigError, EmoScopeError
from emoscope.fsutil import atomic_directory
from emoscope.losses import build_loss
from emoscope.metrics import compute_metrics
from emoscope.models import EncoderClassifier, autocast_context, default_precision, pick_device, pool_tokens
from emoscope.models.fingerprint import weights_fingerprint
from emoscope.manifest import EncoderEntry, ModelSpec, build_manifest
from emoscope.models.meta import MetaLearner, build_meta, save_meta
from emoscope.models.stacked import StackedModel
from emoscope.models.runtime import peak_gpu_mb, peak_rss_mb
from emoscope.text import NormalizerConfig
from emoscope.words import WordEncoder, pool_words, read_words, text_key
from emoscope.thresholds import tune_thresholds

Logger = Callable[[str], None]
KIND = StackedModel.kind


class LeakageError(EmoScopeError):
    """An encoder was asked to embed a text it was fine-tuned on, in out-of-fold mode."""


# --- word embeddings: extraction and cache -------------------------------------------------------


@dataclass
class WordEmbeddings:
    """Ragged word vectors of n texts: text i is ``flat[offsets[i]:offsets[i+1]]``."""

    flat: np.ndarray  # float32 [S, D]
    offsets: np.ndarray  # int64 [n + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return self.flat.shape[1]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self, indices: Sequence[int]) -> list[np.ndarray]:
        return [self.flat[self.offsets[i]:self.offsets[i + 1]] for i in indices]

    def take(self, indices: Sequence[int]) -> WordEmbeddings:
        rows = self.rows(indices)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        flat = np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32)
        return WordEmbeddings(flat, offsets)

    def batch(self, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``[B, W, D]`` tensor and word counts ``[B]``."""
        rows = self.rows(indices)
        lengths = torch.as_tensor([len(r) for r in rows])
        x = torch.zeros((len(rows), int(lengths.max()), self.dim), dtype=torch.float32)
        for i, r in enumerate(rows):
            x[i, : len(r)] = torch.from_numpy(r)
        return x.to(device), lengths.to(device)

    @staticmethod
    def hstack(parts: Sequence[WordEmbeddings]) -> WordEmbeddings:
        """Concatenate the encoders' vectors word by word (their word sequences must line up)."""
        for p in parts[1:]:
            if not np.array_equal(p.offsets, parts[0].offsets):
                raise ValueError("the encoders' word sequences do not line up (different word counts per text)")
        return WordEmbeddings(np.concatenate([p.flat for p in parts], axis=1), parts[0].offsets)

    @staticmethod
    def gather(parts: Sequence[tuple[WordEmbeddings, np.ndarray]], n: int) -> WordEmbeddings:
        """Assemble n texts from pieces: each piece is (embeddings, the positions its rows go to)."""
        rows: list[np.ndarray | None] = [None] * n
        for emb, positions in parts:
            for row, pos in zip(emb.rows(range(len(emb))), positions):
                rows[int(pos)] = row
        if any(r is None for r in rows):
            raise ValueError("some texts were never embedded")
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        return WordEmbeddings(np.concatenate(rows), offsets)


@torch.inference_mode()
def extract_word_embeddings(encoder: nn.Module, word_encoder: WordEncoder, word_lists: Sequence[Sequence[str]],
                            batch_size: int, device: torch.device, pooling: str = "mean",
                            head: tuple[nn.Module, str] | None = None) -> WordEmbeddings | tuple[WordEmbeddings, WordEmbeddings]:
    """Word vectors of each text from one encoder, in input order, batched by token length.

    ``head`` = (classifier head, its token pooling): also return that base classifier's logits
    per text (one row per text, as :func:`extract_base_logits`) from the same forward pass."""
    encoder.eval()
    encoded = word_encoder.encode(word_lists)
    rows: list[np.ndarray | None] = [None] * len(encoded)
    logits = None if head is None else np.zeros((len(encoded), head[0].out_features), dtype=np.float32)
    order = np.argsort([len(ids) for ids, _ in encoded], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = word_encoder.pad([encoded[i] for i in idx])
        n_words = max(len(word_lists[i]) for i in idx)
        mask = batch["attention_mask"].to(device)
        with autocast_context(device):
            hidden = encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        pooled = pool_words(hidden.float(), batch["word_index"].to(device), n_words, pooling).cpu().numpy()
        for row, i in enumerate(idx):
            rows[i] = pooled[row, : len(word_lists[i])]
        if head is not None:
            logits[idx] = head[0](pool_tokens(hidden.float(), mask, head[1])).float().cpu().numpy()
    if not rows:
        emb = WordEmbeddings(np.zeros((0, encoder.config.hidden_size), np.float32), np.zeros(1, np.int64))
    else:
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        emb = WordEmbeddings(np.ascontiguousarray(np.concatenate(rows), dtype=np.float32), offsets)
    if head is None:
        return emb
    return emb, WordEmbeddings(logits, np.arange(len(encoded) + 1, dtype=np.int64))


def extract_base_logits(encoder: nn.Module, head: nn.Module, pooling: str, word_encoder: WordEncoder,
                        word_lists: Sequence[Sequence[str]], batch_size: int, device: torch.device) -> WordEmbeddings:
    """A base classifier's logits for each text (one row per text), read through the stack's own
    word segmentation, exactly as :class:`StackedModel` computes them at prediction time."""
    return extract_word_embeddings(encoder, word_encoder, word_lists, batch_size, device, head=(head, pooling))[1]


class EmbeddingCache:
    """Word vectors on disk, keyed by (encoder key, text key); ``root=None`` caches nothing.

    ``root/<encoder key>/index.json`` maps text keys to rows of shard files
    (``shard-*.safetensors``). Each lookup computes only the missing texts and appends one shard;
    the index is updated under a file lock and replaced atomically.
    """

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    def get(self, encoder_key: str, text_keys: Sequence[str],
            compute: Callable[[list[int]], WordEmbeddings]) -> tuple[WordEmbeddings, int]:
        """Vectors for every text; ``compute(positions)`` embeds the texts not cached yet.
        Returns the embeddings and how many texts came from the cache."""
        if self.root is None:
            return compute(list(range(len(text_keys)))), 0
        from safetensors.numpy import load_file, save_file

        folder = self.root / encoder_key
        folder.mkdir(parents=True, exist_ok=True)
        index = self._read_index(folder)
        unique_missing = {k for k in text_keys if k not in index}
        missing = [i for i, k in enumerate(text_keys) if k in unique_missing]
        # Embed each missing text once, even when it repeats.
        first: dict[str, int] = {}
        for i in missing:
            first.setdefault(text_keys[i], i)
        if first:
            positions = list(first.values())
            fresh = compute(positions)
            shard = f"shard-{uuid.uuid4().hex[:12]}.safetensors"
            save_file({"vectors": fresh.flat}, str(folder / shard))
            with open(folder / ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                index = self._read_index(folder)
                for j, pos in enumerate(positions):
                    index[text_keys[pos]] = [shard, int(fresh.offsets[j]), int(fresh.offsets[j + 1])]
                tmp = folder / f".index.{uuid.uuid4().hex[:8]}.tmp"
                tmp.write_text(json.dumps(index), encoding="utf-8")
                os.replace(tmp, folder / "index.json")
        shards: dict[str, np.ndarray] = {}
        rows = []
        for k in text_keys:
            shard, start, end = index[k]
            if shard not in shards:
                shards[shard] = load_file(str(folder / shard))["vectors"]
            rows.append(shards[shard][start:end])
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        flat = np.concatenate(rows).astype(np.float32, copy=False) if rows else np.zeros((0, 0), np.float32)
        return WordEmbeddings(flat, offsets), len(text_keys) - len(missing)

    @staticmethod
    def _read_index(folder: Path) -> dict[str, list[Any]]:
        path = folder / "index.json"
        if not path.exists():
            return {}
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}  # a damaged index only costs a recomputation
        return {k: v for k, v in index.items() if (folder / v[0]).exists()}


# --- base models (stage 1) and leakage-safe embedding (stage 2) ---------------------------------


@dataclass
class BaseModel:
    """One instance of a base encoder: pretrained (frozen), fine-tuned on all training texts
    (``full``) or on all but one fold (``fold-i``), and the texts it was trained on."""

    encoder: str
    role: str
    folder: Path | None
    trained_on: frozenset[str]
    source: str
    pooling: str

    def fingerprint(self) -> str | None:
        """The weights fingerprint without loading the model, when it is known (else None)."""
        if self.folder is not None:
            return json.loads((self.folder / "info.json").read_text(encoding="utf-8")).get("fingerprint")
        return _known_fingerprints().get(_source_stamp(self.source) or "")

    def load(self) -> tuple[Any, nn.Module]:
        """``(tokenizer, encoder)``."""
        return load_encoder(self.source if self.folder is None else str(self.folder / "encoder"))

    def load_with_head(self, normalizer: NormalizerConfig, max_length: int, max_words: int,
                       prefix: str) -> tuple[WordEncoder, nn.Module, nn.Module | None]:
        """``(word encoder, encoder, classifier head)``; the head is None for a pretrained encoder."""
        if self.folder is None:
            tokenizer, encoder = load_encoder(self.source)
            return WordEncoder(tokenizer, normalizer, max_length, max_words, prefix), encoder, None
        n_labels = json.loads((self.folder / "info.json").read_text(encoding="utf-8"))["n_labels"]
        model = EncoderClassifier.load(self.folder, n_labels, self.pooling, normalizer, max_length, prefix, max_words)
        return model.word_encoder, model.encoder, model.head


def _source_stamp(source: str) -> str | None:
    """Path, size and mtime of a local source's weight files (None for a hub id)."""
    from emoscope.encoders import resolve_source

    folder = Path(resolve_source(source))
    if not folder.is_dir():
        return None
    files = sorted(f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin"))
    return "|".join([str(folder.resolve())] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files])


def _fingerprints_file() -> Path:
    return cache_dir() / "fingerprints.json"


def _known_fingerprints() -> dict[str, str]:
    try:
        return json.loads(_fingerprints_file().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _remember_fingerprint(source: str, fingerprint: str) -> None:
    stamp = _source_stamp(source)
    if stamp is None:
        return
    known = _known_fingerprints()
    known[stamp] = fingerprint
    path = _fingerprints_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".fingerprints.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(known), encoding="utf-8")
    os.replace(tmp, path)


def _backfill_fingerprint(folder: Path, fingerprint: str) -> None:
    path = folder / "info.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info["fingerprint"] = fingerprint
    tmp = folder / f".info.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def embed_texts(model: BaseModel, keys: Sequence[str], *, allow_seen: bool = False) -> None:
    """The one gate every embedding goes through: refuse texts the model was trained on.

    ``allow_seen`` is for the naive stacking variant, which embeds training texts with the
    encoder fine-tuned on them on purpose.
    """
    if allow_seen:
        return
    seen = [k for k in keys if k in model.trained_on]
    if seen:
        raise LeakageError(f"{model.encoder}/{model.role} was fine-tuned on {len(seen)} of the {len(keys)} texts it "
                           "was asked to embed; out-of-fold stacking must use a model that never saw them")


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


def _stage1_dir(work: Path, config: RunConfig, enc_cfg: EncoderConfig, train_ds: Dataset) -> Path:
    """One folder per (encoder settings, stage-1 settings, training data): a model stays reusable
    when other encoders are added to or dropped from the recipe."""
    encoder = {k: v for k, v in dataclasses.asdict(enc_cfg).items() if k != "name" and not (k == "seed" and v is None)}
    relevant = {"encoder": encoder, "training": dataclasses.asdict(config.training), "text": config.text.to_dict(),
                "folds": config.stack.folds, "finetune_loss": config.stack.finetune_loss,
                "train": train_ds.fingerprint(), "validation": dataclasses.asdict(config.data)}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]
    return work / "stage1" / f"{enc_cfg.label}-{digest}"


def _finetune(config: RunConfig, enc_index: int, role: str, train_ds: Dataset, val_ds: Dataset,
              eval_ds: Dataset | None, keys: Sequence[str], root: Path, log: Logger, progress: bool,
              device: torch.device) -> BaseModel:
    """Fine-tune (or reuse a finished) stage-1 model on ``train_ds``, in ``root / role``."""
    from emoscope.training import fit_classifier

    enc_cfg = config.encoders[enc_index]
    name = enc_cfg.label
    folder = root / role
    trained_on = frozenset(keys)
    keys_digest = hashlib.sha256("\n".join(sorted(trained_on)).encode()).hexdigest()[:24]
    info_path = folder / "info.json"
    if info_path.exists():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("trained_on_digest") == keys_digest:
            log(f"[stage 1] {name}/{role}: reusing the finished model in {folder}")
            return BaseModel(name, role, folder, trained_on, enc_cfg.source, enc_cfg.pooling)
    started = time.perf_counter()
    log(f"[stage 1] {name}/{role}: fine-tuning on {len(train_ds)} texts")
    fit = fit_classifier(config, enc_cfg, train_ds, val_ds, loss=LossConfig(name=config.stack.finetune_loss),
                         progress=progress, log=lambda m: log(f"    {m}"), device=device)
    probs = {"validation": fit.val_probs}
    if eval_ds is not None and role == "full":
        probs["eval"] = fit.model.predict_proba(eval_ds.texts)
    with atomic_directory(folder) as tmp:
        fit.model.cpu().save(tmp)
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in probs.items()}, str(tmp / "probs.safetensors"))
        info = {"encoder": name, "role": role, "n_labels": len(train_ds.label_names), "n_train": len(train_ds),
                "trained_on_digest": keys_digest, "trained_on": sorted(trained_on), "best_epoch": fit.best_epoch,
                "fingerprint": weights_fingerprint(fit.model.encoder),
                "thresholds": [float(x) for x in fit.thresholds], "history": fit.history,
                "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                **peak_gpu_mb(device), "device": str(device)}
        (tmp / "info.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    fit.model.to("cpu")
    del fit
    log(f"[stage 1] {name}/{role}: done in {time.perf_counter() - started:.0f}s")
    return BaseModel(name, role, folder, trained_on, enc_cfg.source, enc_cfg.pooling)


@dataclass
class StackData:
    """What stage 3 reads: per encoder, word embeddings of each split (the training split both
    out-of-fold, when folds > 1, and naive)."""

    encoders: list[str]
    input_sizes: list[int]
    train_oof: list[WordEmbeddings] | None
    train_naive: list[WordEmbeddings]
    validation: list[WordEmbeddings]
    eval: list[WordEmbeddings] | None
    base_models: dict[str, BaseModel]  # encoder name -> the model that goes into the bundle
    single_scores: dict[str, dict[str, Any]]  # encoder name -> stage-1 full model's validation/eval probs
    stage_seconds: dict[str, float]
    stage_peak_rss_mb: dict[str, float]
    # fine-tuned encoder name -> split ("train", "train-naive", "validation", "eval") -> logits of
    # its stage-1 classifier, one row per text (out-of-fold for "train"); empty unless meta.base_logits
    base_logits: dict[str, dict[str, WordEmbeddings]] = dataclasses.field(default_factory=dict)

    def select(self, names: Sequence[str], split: str, naive: bool = False) -> WordEmbeddings:
        table = {"train": (self.train_naive if naive or self.train_oof is None else self.train_oof),
                 "validation": self.validation, "eval": self.eval}[split]
        if table is None:
            raise ValueError(f"no {split} embeddings")
        return WordEmbeddings.hstack([table[self.encoders.index(n)] for n in names])

    def base_names(self, names: Sequence[str]) -> list[str]:
        """Of ``names``, the encoders whose stage-1 classifier logits the meta-learner can read."""
        return [n for n in names if n in self.base_logits]

    def select_base(self, names: Sequence[str], split: str, naive: bool = False) -> np.ndarray | None:
        """``[n, len(base_names) * L]``: the base classifiers' logits, concatenated; None if none."""
        chosen = self.base_names(names)
        if not chosen:
            return None
        key = "train-naive" if split == "train" and (naive or self.train_oof is None) else split
        return np.concatenate([self.base_logits[n][key].flat for n in chosen], axis=1)


def work_folder(config: RunConfig) -> Path:
    """Where a stacked recipe keeps its stage-1 models (each under a key of its own settings)."""
    return cache_dir() / "stack-work" / config.name


def embeddings_cache(config: RunConfig) -> EmbeddingCache:
    return EmbeddingCache(config.stack.cache_dir or (cache_dir() / "embeddings"))


def prepare_stack(config: RunConfig, data: Any, *, work: Path | None = None, progress: bool = True,
                  log: Logger = print, naive_too: bool = False) -> StackData:
    """Stages 1 and 2: fine-tune (or reuse) the base encoders and embed every split."""
    stack = config.stack
    device = pick_device(config.training.device)
    train_ds, val_ds, eval_ds = data.train, data.validation, data.eval
    work = work or work_folder(config)
    cache = embeddings_cache(config)
    normalizer = config.text
    words = {split: [read_words(t, normalizer, stack.max_words).model_words for t in ds.texts]
             for split, ds in (("train", train_ds), ("validation", val_ds), ("eval", eval_ds)) if ds is not None}
    keys = {split: [text_key(w) for w in ws] for split, ws in words.items()}
    oof = stack.folds > 1
    folds = fold_assignments(train_ds.labels, keys["train"], stack.folds, config.training.seed) if oof else None
    seconds = {"finetune": 0.0, "embed": 0.0}
    peaks = {}
    started = time.perf_counter()

    base_models: dict[str, BaseModel] = {}
    fold_models: dict[str, list[BaseModel]] = {}
    single_scores: dict[str, dict[str, Any]] = {}
    for i, enc_cfg in enumerate(config.encoders):
        name = enc_cfg.label
        if not enc_cfg.fine_tune:
            base_models[name] = BaseModel(name, "pretrained", None, frozenset(), enc_cfg.source, enc_cfg.pooling)
            continue
        root = _stage1_dir(work, config, enc_cfg, train_ds)
        full = _finetune(config, i, "full", train_ds, val_ds, eval_ds, keys["train"], root, log, progress, device)
        base_models[name] = full
        from safetensors.numpy import load_file

        info = json.loads((full.folder / "info.json").read_text(encoding="utf-8"))
        single_scores[name] = {**load_file(str(full.folder / "probs.safetensors")), "info": info}
        if oof:
            fold_models[name] = []
            for f in range(stack.folds):
                idx = np.flatnonzero(folds != f)
                fold_models[name].append(_finetune(config, i, f"fold-{f + 1}", train_ds.subset(idx), val_ds, None,
                                                   [keys["train"][j] for j in idx], root, log, progress, device))
    seconds["finetune"] = time.perf_counter() - started
    peaks["finetune"] = peak_rss_mb()

    started = time.perf_counter()
    out: dict[str, dict[str, WordEmbeddings]] = {}
    base_logits: dict[str, dict[str, WordEmbeddings]] = {}
    want_base = config.meta.base_logits
    input_sizes = []
    for enc_cfg in config.encoders:
        name = enc_cfg.label
        logit_pieces: dict[str, list[tuple[WordEmbeddings, np.ndarray]]] = {}
        jobs: list[tuple[BaseModel, str, np.ndarray, bool]] = []  # (model, split, positions, allow_seen)
        full = base_models[name]
        for split in words:
            n = len(words[split])
            if split == "train" and oof and name in fold_models:
                for f, model in enumerate(fold_models[name]):
                    jobs.append((model, "train", np.flatnonzero(folds == f), False))
            elif name in fold_models:
                # A validation/eval text that also sits in the training data goes to the fold
                # model that held it out, so no encoder ever embeds a text it was trained on.
                seen = np.asarray([k in full.trained_on for k in keys[split]], dtype=bool)
                jobs.append((full, split, np.flatnonzero(~seen), False))
                fold_of = dict(zip(keys["train"], folds))
                for f, model in enumerate(fold_models[name]):
                    jobs.append((model, split, np.flatnonzero(seen & np.asarray([fold_of.get(k) == f for k in keys[split]])), False))
            else:
                # Frozen encoders saw no text; naive stacking lets the full model embed its own.
                jobs.append((full, split, np.arange(n), not oof))
        if oof and name in fold_models:
            jobs.append((full, "train-naive", np.arange(len(words["train"])), True))
        pieces: dict[str, list[tuple[WordEmbeddings, np.ndarray]]] = {}
        by_model: dict[int, list[tuple[BaseModel, str, np.ndarray, bool]]] = {}
        for job in jobs:
            by_model.setdefault(id(job[0]), []).append(job)
        for model_jobs in by_model.values():
            model = model_jobs[0][0]
            loaded: dict[str, Any] = {}

            def ensure_loaded(_loaded=loaded, _model=model) -> tuple[WordEncoder, nn.Module, nn.Module | None]:
                """This model's word encoder, encoder and head, loaded once for all its jobs."""
                if "model" not in _loaded:
                    we, encoder, head = _model.load_with_head(normalizer, enc_cfg.max_length, stack.max_words,
                                                              text_prefix(enc_cfg.source))
                    _loaded["model"] = (we, encoder.to(device), None if head is None else head.to(device).eval())
                return _loaded["model"]

            # Base-classifier logits computed alongside word vectors, by text key, so a text that
            # misses both caches goes through the encoder once.
            spare_logits: dict[str, np.ndarray] = {}
            with_head = want_base and model.folder is not None

            def compute(positions: list[int], split_words: list[list[str]], split_keys: list[str],
                        _ensure=ensure_loaded, _spare=spare_logits, _with_head=with_head) -> WordEmbeddings:
                we, encoder, head = _ensure()
                got = extract_word_embeddings(encoder, we, [split_words[p] for p in positions],
                                              config.training.eval_batch_size, device, stack.word_pooling,
                                              head=(head, enc_cfg.pooling) if _with_head else None)
                if not _with_head:
                    return got
                emb, logits = got
                _spare.update((split_keys[p], logits.flat[row]) for row, p in enumerate(positions))
                return emb

            def compute_logits(positions: list[int], split_words: list[list[str]], split_keys: list[str],
                               _ensure=ensure_loaded, _spare=spare_logits) -> WordEmbeddings:
                if all(split_keys[p] in _spare for p in positions):
                    rows = np.stack([_spare[split_keys[p]] for p in positions]).astype(np.float32)
                    return WordEmbeddings(rows, np.arange(len(positions) + 1, dtype=np.int64))
                we, encoder, head = _ensure()
                return extract_base_logits(encoder, head, enc_cfg.pooling, we, [split_words[p] for p in positions],
                                           config.training.eval_batch_size, device)

            for _, split, positions, allow_seen in model_jobs:
                if len(positions) == 0:
                    continue
                base_split = "train" if split == "train-naive" else split
                split_keys = [keys[base_split][p] for p in positions]
                split_words = [words[base_split][p] for p in positions]
                embed_texts(model, split_keys, allow_seen=allow_seen)
                if "key" not in loaded:
                    fingerprint = model.fingerprint()
                    if fingerprint is None:
                        fingerprint = weights_fingerprint(ensure_loaded()[1])
                        if model.folder is None:
                            _remember_fingerprint(model.source, fingerprint)
                        else:  # a stage-1 model from an older run: remember it for the next one
                            _backfill_fingerprint(model.folder, fingerprint)
                    loaded["key"] = _encoder_key(fingerprint, enc_cfg, normalizer, stack, default_precision(device))
                emb, hits = cache.get(loaded["key"], split_keys,
                                      lambda pos, _w=split_words, _k=split_keys: compute(pos, _w, _k))
                log(f"[stage 2] {name}/{model.role} → {split}: {len(positions)} texts ({hits} from the cache)")
                pieces.setdefault(split, []).append((emb, positions))
                if with_head:
                    logits, _ = cache.get(f"{loaded['key']}-head-{enc_cfg.pooling}", split_keys,
                                          lambda pos, _w=split_words, _k=split_keys: compute_logits(pos, _w, _k))
                    logit_pieces.setdefault(split, []).append((logits, positions))
            loaded.clear()
        out[name] = {split: WordEmbeddings.gather(p, len(words["train" if split == "train-naive" else split]))
                     for split, p in pieces.items()}
        if logit_pieces:
            base_logits[name] = {split: WordEmbeddings.gather(p, len(words["train" if split == "train-naive" else split]))
                                 for split, p in logit_pieces.items()}
            base_logits[name].setdefault("train-naive", base_logits[name]["train"])
        input_sizes.append(out[name]["validation"].dim)
    seconds["embed"] = time.perf_counter() - started
    peaks["embed"] = peak_rss_mb()
    names = [e.label for e in config.encoders]
    return StackData(
        encoders=names, input_sizes=input_sizes,
        train_oof=[out[n]["train"] for n in names] if oof else None,
        train_naive=[out[n].get("train-naive", out[n]["train"]) for n in names],
        validation=[out[n]["validation"] for n in names],
        eval=[out[n]["eval"] for n in names] if eval_ds is not None else None,
        base_models=base_models, single_scores=single_scores, stage_seconds=seconds, stage_peak_rss_mb=peaks,
        base_logits=base_logits,
    )


def _encoder_key(fingerprint: str, enc_cfg: Any, normalizer: NormalizerConfig, stack: Any,
                 precision: str = "fp32") -> str:
    """Cache key of one encoder's word vectors: its weights, everything that shapes its input, and
    the precision they were computed in (bf16 on a GPU: vectors from a CPU run and a GPU run never
    mix in one training matrix; fp32 adds nothing to the key, so existing caches stay valid)."""
    raw = {"weights": fingerprint, "max_length": enc_cfg.max_length, "prefix": text_prefix(enc_cfg.source), "text": normalizer.to_dict(),
           "max_words": stack.max_words, "word_pooling": stack.word_pooling}
    if precision != "fp32":
        raw["precision"] = precision
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:24]


# --- stage 3: the meta-learner -------------------------------------------------------------------


@dataclass
class MetaFit:
    meta: MetaLearner
    history: list[dict[str, Any]]
    best_epoch: int
    val_probs: np.ndarray
    thresholds: np.ndarray
    seconds: float


def _base_batch(base: np.ndarray | None, idx: Sequence[int], device: torch.device) -> torch.Tensor | None:
    return None if base is None else torch.from_numpy(np.ascontiguousarray(base[idx])).to(device)


@torch.inference_mode()
def meta_probs(meta: MetaLearner, emb: WordEmbeddings, batch_size: int, device: torch.device,
               base: np.ndarray | None = None) -> np.ndarray:
    meta.eval()
    out = np.zeros((len(emb), meta.n_labels), dtype=np.float32)
    order = np.argsort(emb.lengths(), kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x, n = emb.batch(idx, device)
        out[idx] = torch.sigmoid(meta(x, n, base=_base_batch(base, idx, device)).float()).cpu().numpy()
    return out


def pick_thresholds(cfg: ThresholdConfig, labels: np.ndarray, probs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if cfg.tune:
        return tune_thresholds(labels, probs, label_mask=mask, fallback=cfg.fallback)
    return np.full(labels.shape[1], cfg.fallback)


def fit_meta(meta_cfg: MetaConfig, loss_cfg: LossConfig, thresholds_cfg: ThresholdConfig, seed: int,
             train_emb: WordEmbeddings, train_ds: Dataset, val_emb: WordEmbeddings, val_ds: Dataset,
             input_sizes: Sequence[int], *, device: torch.device | None = None, log: Logger = print,
             train_base: np.ndarray | None = None, val_base: np.ndarray | None = None) -> MetaFit:
    """Train the Bi-LSTM meta-learner on cached word embeddings, early-stopping on validation macro-F1.

    ``train_base``/``val_base``: the base classifiers' logits per text (``[n, n_base * L]``), read
    by the meta-learner when given (see :class:`MetaLearner`)."""
    from transformers import get_cosine_schedule_with_warmup

    from emoscope.training import length_bucketed_batches, loss_options, seed_everything

    started = time.perf_counter()
    device = device or torch.device("cpu")
    seed_everything(seed)
    labels = train_ds.label_names
    n_base = 0 if train_base is None else train_base.shape[1] // len(labels)
    if (train_base is None) != (val_base is None):
        raise ValueError("give the base classifiers' logits for both the training and the validation texts, or neither")
    meta = build_meta(input_sizes, len(labels), meta_cfg, n_base).to(device)
    loss_fn = build_loss(loss_cfg.name, train_ds.labels, train_ds.label_mask, **loss_options(loss_cfg)).to(device)
    optimizer = torch.optim.AdamW(meta.parameters(), lr=meta_cfg.lr, weight_decay=meta_cfg.weight_decay)
    steps = -(-len(train_ds) // meta_cfg.batch_size) * meta_cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(0.05 * steps), steps)
    targets_all = torch.as_tensor(train_ds.labels, dtype=torch.float32)
    mask_all = None if train_ds.label_mask is None else torch.as_tensor(train_ds.label_mask, dtype=torch.bool)
    rng = np.random.default_rng(seed)
    lengths = train_emb.lengths()
    history: list[dict[str, Any]] = []
    best = (-1.0, 0, None)
    stale = 0
    for epoch in range(1, meta_cfg.epochs + 1):
        meta.train()
        t0, loss_sum, seen = time.perf_counter(), 0.0, 0
        for idx in length_bucketed_batches(lengths, meta_cfg.batch_size, rng):
            x, n = train_emb.batch(idx, device)
            targets = targets_all[idx].to(device)
            mask = None if mask_all is None else mask_all[idx].to(device)
            logits, features = meta(x, n, return_features=True, base=_base_batch(train_base, idx, device))
            loss = loss_fn(logits, targets, mask=mask, features=features)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(meta.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
        probs = meta_probs(meta, val_emb, 256, device, val_base)
        thresholds = pick_thresholds(thresholds_cfg, val_ds.labels, probs, val_ds.label_mask)
        f1 = compute_metrics(val_ds.labels, probs, thresholds, label_mask=val_ds.label_mask)["macro_f1"]
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "val_macro_f1": f1,
                        "seconds": time.perf_counter() - t0})
        if f1 > best[0] + 1e-6:
            best, stale = (f1, epoch, {k: v.detach().clone() for k, v in meta.state_dict().items()}), 0
        else:
            stale += 1
            if stale >= meta_cfg.patience:
                break
    meta.load_state_dict(best[2])
    probs = meta_probs(meta, val_emb, 256, device, val_base)
    thresholds = pick_thresholds(thresholds_cfg, val_ds.labels, probs, val_ds.label_mask)
    seconds = time.perf_counter() - started
    log(f"[stage 3] meta-learner ({loss_cfg.name}): best epoch {best[1]} of {len(history)}, validation macro-F1 "
        f"{best[0]:.4f}, {seconds:.1f}s")
    return MetaFit(meta.cpu(), history, best[1], probs, thresholds, seconds)


# --- the whole recipe ----------------------------------------------------------------------------


def train_stack(config: RunConfig, output: str | Path, *, overwrite: bool = False, progress: bool = True,
                log: Logger = print, work: Path | None = None) -> Path:
    """Run a stacked recipe end to end (stages 1–3) and write the bundle to ``output``."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} already exists; choose another --output or pass --overwrite")
    started = time.perf_counter()
    device = pick_device(config.training.device)
    data = load_training_data(config)
    train_ds, val_ds = data.train, data.validation
    labels = train_ds.label_names
    log(f"[data] train {len(train_ds)} ({train_ds.name}), validation {len(val_ds)} ({val_ds.name})"
        + (f", eval {len(data.eval)} ({data.eval.name})" if data.eval else "") + f"; labels: {', '.join(labels)}")
    if val_ds.labels.sum() == 0:
        raise ConfigError(f"the validation set {val_ds.name} has no positive labels; early stopping and thresholds need some")
    stacked = prepare_stack(config, data, work=work, progress=progress, log=log)
    names = stacked.encoders
    base_names = stacked.base_names(names)
    fit = fit_meta(config.meta, config.loss, config.thresholds, config.training.seed,
                   stacked.select(names, "train"), train_ds,
                   stacked.select(names, "validation"), val_ds, stacked.input_sizes, device=device, log=log,
                   train_base=stacked.select_base(names, "train"), val_base=stacked.select_base(names, "validation"))
    results = {"validation": compute_metrics(val_ds.labels, fit.val_probs, fit.thresholds, label_names=labels,
                                             label_mask=val_ds.label_mask)}
    if data.eval is not None:
        probs = meta_probs(fit.meta.to(device), stacked.select(names, "eval"), 256, device,
                           stacked.select_base(names, "eval"))
        results["eval"] = {"data": data.eval.name,
                           **compute_metrics(data.eval.labels, probs, fit.thresholds, label_names=labels,
                                             label_mask=data.eval.label_mask)}
        log(f"[eval] {data.eval.name}: macro-F1 {results['eval']['macro_f1']:.4f} micro-F1 {results['eval']['micro_f1']:.4f}")

    entries, fingerprints = [], []
    loaded = []
    for k, enc_cfg in enumerate(config.encoders):
        tokenizer, encoder = stacked.base_models[enc_cfg.label].load()
        fingerprints.append(weights_fingerprint(encoder))
        loaded.append((tokenizer, encoder))
        entries.append({"name": enc_cfg.label, "source": enc_cfg.source, "offline_source": enc_cfg.source in SOURCES,
                        "fine_tuned": enc_cfg.fine_tune, "path": f"encoders/{k}-{enc_cfg.label}",
                        "text_prefix": text_prefix(enc_cfg.source), "model_type": encoder.config.model_type,
                        "hidden_size": encoder.config.hidden_size, "max_length": enc_cfg.max_length,
                        "fingerprint": fingerprints[-1], "pooling": enc_cfg.pooling,
                        "head": enc_cfg.label in base_names})

    def write_model(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for entry, (tokenizer, encoder) in zip(entries, loaded):
            encoder.save_pretrained(folder / entry["path"], safe_serialization=True)
            tokenizer.save_pretrained(folder / entry["path"])
            if entry["head"]:
                shutil.copyfile(stacked.base_models[entry["name"]].folder / "head.safetensors",
                                folder / entry["path"] / "head.safetensors")
        save_meta(fit.meta, folder / "meta.safetensors", labels, fingerprints,
                  [k for k, e in enumerate(entries) if e["head"]])

    seconds = time.perf_counter() - started
    model_spec = ModelSpec(kind=KIND, path="model", n_labels=len(labels), max_words=config.stack.max_words,
                           word_pooling=config.stack.word_pooling, folds=config.stack.folds,
                           meta={**dataclasses.asdict(config.meta), "input_sizes": stacked.input_sizes},
                           encoders=[EncoderEntry(**e) for e in entries])
    training = {"best_epoch": fit.best_epoch, "epochs_run": len(fit.history), "seconds": round(seconds, 1),
                "stages": {"finetune_seconds": round(stacked.stage_seconds["finetune"], 1),
                           "embed_seconds": round(stacked.stage_seconds["embed"], 1),
                           "meta_seconds": round(fit.seconds, 1),
                           "peak_rss_mb_after": {**{k: round(v, 1) for k, v in stacked.stage_peak_rss_mb.items()},
                                                 "meta": round(peak_rss_mb(), 1)}},
                "peak_rss_mb": round(peak_rss_mb(), 1), **peak_gpu_mb(device), "device": str(device),
                "precision": default_precision(device), "torch_threads": torch.get_num_threads()}
    manifest = build_manifest(config, data, fit.thresholds, model_spec, results, training)
    validation = bundle_io.ValidationData(texts=list(val_ds.texts), labels=val_ds.labels, probs=fit.val_probs,
                                          ids=list(val_ds.ids), mask=val_ds.label_mask)
    path = bundle_io.save_bundle(output, manifest, write_model, validation=validation, log=fit.history,
                                 overwrite=overwrite)
    log(f"[done] {path} in {seconds:.0f}s; validation macro-F1 {results['validation']['macro_f1']:.4f}; "
        f"peak RSS {peak_rss_mb():.0f} MiB")
    return path
