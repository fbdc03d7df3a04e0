"""What stage 2 computes and keeps: ragged rows per text, the on-disk cache, its keys.

:class:`RaggedRows` holds n texts' rows of varying count: an encoder's word vectors (one row per
shared word) or a base classifier's logits (one row per text). :func:`embed_words` computes them
from one encoder. :class:`EmbeddingCache` keeps them on disk keyed by :func:`encoder_key` (the
encoder's weights fingerprint and everything that shapes its input) and each text's key, so
reruns and ablations reuse them. The fingerprints registry remembers the fingerprint of a
pretrained source's weight files, so a rerun knows its cache key without loading the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from emoscope import progress
from emoscope.config import EncoderConfig, RunConfig, StackConfig
from emoscope.encoders import cache_dir, resolve_source, text_prefix
from emoscope.models import autocast_context, pool_tokens
from emoscope.models.runtime import length_batches
from emoscope.text import NormalizerConfig
from emoscope.words import Encoded, WordEncoder, pool_words


@dataclass
class RaggedRows:
    """Rows of n texts, a varying number per text: text i is ``flat[offsets[i]:offsets[i+1]]``.

    Word vectors have one row per word of the text; a base classifier's logits one row per text
    (``offsets = 0, 1, …, n``)."""

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

    @staticmethod
    def of_rows(rows: Sequence[np.ndarray]) -> RaggedRows:
        """Texts from their row blocks (at least one)."""
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        return RaggedRows(np.concatenate(rows), offsets)

    def take(self, indices: Sequence[int]) -> RaggedRows:
        rows = self.rows(indices)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        flat = np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32)
        return RaggedRows(flat, offsets)

    def batch(self, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``[B, W, D]`` tensor and row counts ``[B]``."""
        rows = self.rows(indices)
        lengths = torch.as_tensor([len(r) for r in rows])
        x = torch.zeros((len(rows), int(lengths.max()), self.dim), dtype=torch.float32)
        for i, r in enumerate(rows):
            x[i, : len(r)] = torch.from_numpy(r)
        return x.to(device), lengths.to(device)

    @staticmethod
    def hstack(parts: Sequence[RaggedRows]) -> RaggedRows:
        """Concatenate the encoders' vectors word by word (their word sequences must line up)."""
        for p in parts[1:]:
            if not np.array_equal(p.offsets, parts[0].offsets):
                raise ValueError("the encoders' word sequences do not line up (different word counts per text)")
        return RaggedRows(np.concatenate([p.flat for p in parts], axis=1), parts[0].offsets)

    @staticmethod
    def gather(parts: Sequence[tuple[RaggedRows, np.ndarray]], n: int) -> RaggedRows:
        """Assemble n texts from pieces: each piece is (rows, the positions its texts go to)."""
        rows: list[np.ndarray | None] = [None] * n
        for emb, positions in parts:
            for row, pos in zip(emb.rows(range(len(emb))), positions):
                rows[int(pos)] = row
        if any(r is None for r in rows):
            raise ValueError("some texts were never embedded")
        return RaggedRows.of_rows(rows)


def one_row_per_text(rows: np.ndarray) -> RaggedRows:
    """``[n, D]`` values, one row per text (a classifier's logits)."""
    return RaggedRows(rows, np.arange(len(rows) + 1, dtype=np.int64))


@torch.inference_mode()
def embed_words(encoder: nn.Module, word_encoder: WordEncoder, word_lists: Sequence[Sequence[str]],
                batch_size: int, device: torch.device, pooling: str = "mean",
                head: tuple[nn.Module, str] | None = None,
                stored_states: Callable[[list[Encoded]], Any] | None = None) -> tuple[RaggedRows, RaggedRows | None]:
    """Word vectors of each text from one encoder, in input order, batched by token length.

    ``head`` = (classifier head, its token pooling): the second result is that base classifier's
    logits per text from the same forward pass, exactly as
    :class:`~emoscope.models.stacked.StackedModel` computes them at prediction time (else None).
    ``stored_states(encoded)``, for an encoder fine-tuned with ``train_layers``, gives its frozen
    layers' stored output (a ``LowerLayerStates``): each batch then starts above them.
    Texts embedded so far are reported as (thinned) ``embed`` progress events."""
    encoder.eval()
    encoded = word_encoder.encode(word_lists)
    states = stored_states(encoded) if stored_states is not None and encoded else None
    rows: list[np.ndarray | None] = [None] * len(encoded)
    logits = None if head is None else np.zeros((len(encoded), head[0].out_features), dtype=np.float32)
    lengths = [len(ids) for ids, _ in encoded]
    total_tokens = sum(lengths)
    report, started, done, tokens = progress.current(), time.perf_counter(), 0, 0
    for idx in length_batches(lengths, batch_size):
        batch = word_encoder.pad([encoded[i] for i in idx])
        n_words = max(len(word_lists[i]) for i in idx)
        mask = batch["attention_mask"].to(device)
        with (states.reading(idx) if states is not None else contextlib.nullcontext()), autocast_context(device):
            hidden = encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        pooled = pool_words(hidden.float(), batch["word_index"].to(device), n_words, pooling).cpu().numpy()
        for row, i in enumerate(idx):
            rows[i] = pooled[row, : len(word_lists[i])]
        if head is not None:
            logits[idx] = head[0](pool_tokens(hidden.float(), mask, head[1])).float().cpu().numpy()
        done, tokens = done + len(idx), tokens + sum(lengths[i] for i in idx)
        # Shortest texts come first: the share of tokens done, not of texts, says how far along it is.
        report.tick("embed", done, len(encoded), tokens=tokens, tokens_total=total_tokens,
                    seconds=round(time.perf_counter() - started, 3))
    if not rows:
        emb = RaggedRows(np.zeros((0, encoder.config.hidden_size), np.float32), np.zeros(1, np.int64))
    else:
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        emb = RaggedRows(np.ascontiguousarray(np.concatenate(rows), dtype=np.float32), offsets)
    return emb, None if logits is None else one_row_per_text(logits)


class EmbeddingCache:
    """Rows on disk, keyed by (encoder key, text key); ``root=None`` caches nothing.

    ``root/<encoder key>/index.json`` maps text keys to rows of shard files
    (``shard-*.safetensors``). Each lookup computes only the missing texts and appends one shard;
    the index is updated under a file lock and replaced atomically.
    """

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    def get(self, encoder_key: str, text_keys: Sequence[str],
            compute: Callable[[list[int]], RaggedRows]) -> tuple[RaggedRows, int]:
        """Rows of every text; ``compute(positions)`` computes those of the texts not cached yet.
        Returns the rows and how many texts came from the cache."""
        if self.root is None:
            return compute(list(range(len(text_keys)))), 0
        folder = self.root / encoder_key
        folder.mkdir(parents=True, exist_ok=True)
        index = self._read_index(folder)
        unique_missing = {k for k in text_keys if k not in index}
        missing = [i for i, k in enumerate(text_keys) if k in unique_missing]
        # Compute each missing text once, even when it repeats.
        first: dict[str, int] = {}
        for i in missing:
            first.setdefault(text_keys[i], i)
        if first:
            index = self._add_shard(folder, [text_keys[p] for p in first.values()], compute(list(first.values())))
        shards: dict[str, np.ndarray] = {}
        rows = []
        for k in text_keys:
            shard, start, end = index[k]
            if shard not in shards:
                shards[shard] = load_file(str(folder / shard))["vectors"]
            rows.append(shards[shard][start:end])
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        flat = np.concatenate(rows).astype(np.float32, copy=False) if rows else np.zeros((0, 0), np.float32)
        return RaggedRows(flat, offsets), len(text_keys) - len(missing)

    def _add_shard(self, folder: Path, keys: Sequence[str], fresh: RaggedRows) -> dict[str, list[Any]]:
        """Write ``fresh`` as a new shard and add its texts to the index; returns the index."""
        shard = f"shard-{uuid.uuid4().hex[:12]}.safetensors"
        save_file({"vectors": fresh.flat}, str(folder / shard))
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self._read_index(folder)
            for j, key in enumerate(keys):
                index[key] = [shard, int(fresh.offsets[j]), int(fresh.offsets[j + 1])]
            tmp = folder / f".index.{uuid.uuid4().hex[:8]}.tmp"
            tmp.write_text(json.dumps(index), encoding="utf-8")
            os.replace(tmp, folder / "index.json")
        return index

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


def embeddings_cache(config: RunConfig) -> EmbeddingCache:
    """The recipe's cache: ``stack.cache_dir``, else ``<cache>/embeddings``."""
    return EmbeddingCache((config.stack.cache_dir if config.stack is not None else None) or (cache_dir() / "embeddings"))


def encoder_key(fingerprint: str, enc_cfg: EncoderConfig, normalizer: NormalizerConfig, stack: StackConfig,
                precision: str = "fp32") -> str:
    """Cache key of one encoder's word vectors: its weights, everything that shapes its input, and
    the precision they were computed in (bf16 on a GPU: vectors from a CPU run and a GPU run never
    mix in one training matrix; fp32 adds nothing to the key, so existing caches stay valid)."""
    raw = {"weights": fingerprint, "max_length": enc_cfg.max_length, "prefix": text_prefix(enc_cfg.source),
           "text": normalizer.to_dict(), "max_words": stack.max_words, "word_pooling": stack.word_pooling}
    if precision != "fp32":
        raw["precision"] = precision
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:24]


def head_key(word_vectors_key: str, pooling: str) -> str:
    """Cache key of a base classifier's logits, beside its encoder's word vectors."""
    return f"{word_vectors_key}-head-{pooling}"


# --- the fingerprints registry: a pretrained source's weights fingerprint, by its files' stamp ---


def source_stamp(source: str) -> str | None:
    """Path, size and mtime of a local source's weight files (None for a hub id)."""
    folder = Path(resolve_source(source))
    if not folder.is_dir():
        return None
    files = sorted(f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin"))
    return "|".join([str(folder.resolve())] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files])


def _fingerprints_file() -> Path:
    return cache_dir() / "fingerprints.json"


def known_fingerprints() -> dict[str, str]:
    try:
        return json.loads(_fingerprints_file().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def remember_fingerprint(source: str, fingerprint: str) -> None:
    stamp = source_stamp(source)
    if stamp is None:
        return
    known = known_fingerprints()
    known[stamp] = fingerprint
    path = _fingerprints_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".fingerprints.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(known), encoding="utf-8")
    os.replace(tmp, path)
