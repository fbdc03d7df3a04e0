"""Layer IG over a whole dataset: every word of every text, every label, computed once and cached.

``load_texts`` reads what to explain (the bundle's validation set, a dataset spec or a file, with
gold labels when it has them); ``dataset_attributions`` runs the encoders batched over the texts
(length-ordered chunks, each with its blank baselines: :func:`emoscope.explain.layer_ig.layer_pass`)
and the fast attribution for all labels at once, reporting progress per chunk, and keeps the
result on disk under ``EMOSCOPE_CACHE_DIR/explain-dataset/<key>`` (the key: the bundle's path,
manifest mtime and sha256, the texts, the method and its parameters), so a second look at the same
data costs a file read. :mod:`emoscope.explain.word_summary` aggregates it per label, language and
subset.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoscope.errors import InputError
from emoscope.explain.layer_ig import layer_attributions, layer_pass, word_scores
from emoscope.explain.model import ExplainModel
from emoscope.explain.registry import resolve_params
from emoscope.fsutil import atomic_directory, sha256_file
from emoscope.text import detect_language

METHOD = "layer-ig"
FORMAT = 1  # bump when what the cache holds changes
BATCH_TEXTS = 16


@dataclass
class TextsToExplain:
    """The texts of a dataset and, when it has them, their gold labels in the model's label order
    (``mask``: False where a label was not annotated; None: all were)."""

    texts: list[str]
    name: str
    gold: np.ndarray | None = None
    mask: np.ndarray | None = None

    @classmethod
    def of_validation(cls, data: Any) -> TextsToExplain:
        """A bundle's :class:`~emoscope.bundle.ValidationData`."""
        return cls(list(data.texts), "validation", np.asarray(data.labels), data.mask)


@dataclass
class DatasetAttributions:
    """Per text: its language and the model's probabilities; per word the model read (flat, in
    text order): its text index, the word as typed with its offsets, its normalised form (what
    words are grouped by) and its score for every label."""

    texts: list[str]
    languages: list[str]
    probabilities: np.ndarray  # [n, L]
    doc: np.ndarray  # [N] text index of each word
    start: np.ndarray  # [N]
    end: np.ndarray  # [N]
    typed: list[str]  # [N]
    keys: list[str]  # [N]
    scores: np.ndarray  # [N, L]
    delta: np.ndarray  # [n, L] completeness gap
    labels: list[str]
    params: dict[str, Any]
    seconds: float = 0.0
    cached: bool = False

    def save(self, folder: Path) -> None:
        np.savez(folder / "arrays.npz", probabilities=self.probabilities, doc=self.doc, start=self.start, end=self.end,
                 scores=self.scores, delta=self.delta)
        strings = {"texts": self.texts, "languages": self.languages, "typed": self.typed, "keys": self.keys,
                   "labels": self.labels, "params": self.params, "seconds": self.seconds, "format": FORMAT}
        (folder / "strings.json").write_text(json.dumps(strings, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> DatasetAttributions | None:
        try:
            strings = json.loads((folder / "strings.json").read_text(encoding="utf-8"))
            with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
                values = {k: arrays[k] for k in ("probabilities", "doc", "start", "end", "scores", "delta")}
        except (OSError, ValueError, KeyError):
            return None  # a damaged cache entry is recomputed
        if strings.get("format") != FORMAT:
            return None
        return cls(strings["texts"], strings["languages"], typed=strings["typed"], keys=strings["keys"],
                   labels=strings["labels"], params=strings["params"], seconds=float(strings["seconds"]), cached=True,
                   **values)


def load_texts(spec: str, model: ExplainModel, data_root: str | None = None, text_column: str = "text") -> TextsToExplain:
    """``validation`` (the bundle's validation set), a dataset spec (``semeval2018:ar:dev``) or a
    file: labelled (any reader ``emoscope.data`` knows, gold restricted to the model's labels) or
    unlabelled (CSV/TSV/JSONL with a text column). Bad input is a one-line ``EmoScopeError``."""
    if spec == "validation":
        from emoscope.bundle import read_validation  # the bundle's files: only for this source

        data = read_validation(model.predictor.path, model.predictor.manifest)
        if data is None:
            raise InputError(f"{model.predictor.path} holds no validation set; give a dataset spec or file instead")
        return TextsToExplain.of_validation(data)
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".jsonl"):
        from emoscope import rowfiles  # the file readers: only for an uploaded or named file

        columns = rowfiles.file_columns(path)
        if not set(columns) & set(model.labels):
            if text_column not in columns:
                raise InputError(f"{path.name} has no '{text_column}' column (its columns: {', '.join(columns)})")
            texts = [text for _, _, text in rowfiles.read_rows(path, text_column) if text is not None]
            if not texts:
                raise InputError(f"{path.name} has no texts in its '{text_column}' column")
            return TextsToExplain(texts, path.name)
    from emoscope.data import load_dataset, restrict_labels  # numpy and the readers: only when reading data

    data = load_dataset(spec, data_root=data_root)
    if not len(data):
        raise InputError(f"{spec} holds no texts")
    if not set(data.label_names) & set(model.labels):
        raise InputError(f"{spec} has none of this model's labels ({', '.join(model.labels)}); its labels: "
                         f"{', '.join(data.label_names)}")
    data = restrict_labels(data, list(model.labels))
    return TextsToExplain(list(data.texts), data.name, np.asarray(data.labels), data.label_mask)


def cache_key(model: ExplainModel, texts: Sequence[str], params: dict[str, Any]) -> str:
    path = Path(model.predictor.path).resolve()
    digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()
    raw = json.dumps([FORMAT, str(path), model.cache_key[1], sha256_file(path / "manifest.json"), digest, METHOD,
                      params], sort_keys=True)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


def cache_folder(key: str) -> Path:
    from emoscope.encoders import cache_dir  # the one EMOSCOPE_CACHE_DIR rule; encoders import torch

    return cache_dir() / "explain-dataset" / key


def cached_attributions(model: ExplainModel, texts: Sequence[str],
                        params: dict[str, Any] | None = None) -> DatasetAttributions | None:
    """What :func:`dataset_attributions` would read from the disk cache, or None when it would
    compute (the app queues the work only then)."""
    folder = cache_folder(cache_key(model, texts, resolve_params(METHOD, params, model)))
    return DatasetAttributions.load(folder) if folder.is_dir() else None


def dataset_attributions(model: ExplainModel, texts: Sequence[str], params: dict[str, Any] | None = None,
                         on_progress: Callable[[int, int], None] | None = None, cache: bool = True,
                         batch_texts: int = BATCH_TEXTS) -> DatasetAttributions:
    """Layer IG of every label for every text, from the disk cache when this bundle has seen these
    texts with these parameters; ``on_progress(done, total)`` after each batch of texts."""
    if not texts:
        raise InputError("there are no texts to explain")
    params = resolve_params(METHOD, params, model)
    folder = cache_folder(cache_key(model, texts, params)) if cache else None
    hit = cached_attributions(model, texts, params) if cache else None
    if hit is not None:
        if on_progress is not None:
            on_progress(len(texts), len(texts))
        return hit
    result = _compute(model, list(texts), params, on_progress, batch_texts)
    if folder is not None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(folder) as tmp:
            result.save(tmp)
    return result


def _compute(model: ExplainModel, texts: list[str], params: dict[str, Any],
             on_progress: Callable[[int, int], None] | None, batch_texts: int) -> DatasetAttributions:
    started = time.perf_counter()
    reads = [model.model.read(t) for t in texts]
    order = np.argsort([len(r.model_words) for r in reads], stable=True)
    n_labels = len(model.labels)
    probabilities = np.zeros((len(texts), n_labels), dtype=np.float32)
    delta = np.zeros((len(texts), n_labels), dtype=np.float32)
    per_text: list[np.ndarray | None] = [None] * len(texts)
    indices = list(range(n_labels))
    done = 0
    for first in range(0, len(texts), batch_texts):
        chunk = order[first:first + batch_texts]
        passed = layer_pass(model, [reads[i].model_words for i in chunk])
        result = layer_attributions(model, passed, indices, int(params["n_steps"]))
        for row, i in enumerate(chunk):
            probabilities[i], delta[i] = result.probabilities[row], result.delta[row]
            per_text[i] = word_scores(result.positions[row], result.scores[row], reads[i].read, len(reads[i].words))
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, len(texts))
    doc, start, end, typed, keys, scores = [], [], [], [], [], []
    for i, read in enumerate(reads):
        for position, w in enumerate(read.read):
            word = read.words[w]
            doc.append(i)
            start.append(word.start)
            end.append(word.end)
            typed.append(word.text)
            keys.append(read.model_words[position])
            scores.append(per_text[i][:, w])
    return DatasetAttributions(
        texts, [detect_language(t) for t in texts], probabilities, np.asarray(doc, dtype=np.int32),
        np.asarray(start, dtype=np.int32), np.asarray(end, dtype=np.int32), typed, keys,
        np.asarray(scores, dtype=np.float32).reshape(len(doc), n_labels), delta, list(model.labels), dict(params),
        time.perf_counter() - started)
