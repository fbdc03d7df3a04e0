"""Which words raise and lower each label across a dataset: the dataset view's aggregation.

From :class:`~emoscope.explain.dataset.DatasetAttributions` (every word of every text scored for
every label by layer IG), per label and language: the words (grouped by their normalised form, shown
as typed most often) with their occurrence count, the number of texts, the mean and spread (standard
deviation) of their attribution and the total; the words that most raise the label's probability
(highest mean, at least ``min_count`` occurrences) and those that most lower it; a few example
texts per word, each with the word's offsets so a page can highlight it. ``subset`` restricts the
texts per label: all, gold (annotated with it), predicted (above the threshold), correct, errors,
false-positives (gold 0, predicted 1), false-negatives (gold 1, predicted 0); gold subsets leave out
texts whose dataset did not annotate the label. Cheap: numpy over the cached scores, no model.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emoscope.errors import InputError

SUBSETS = ("all", "gold", "predicted", "correct", "errors", "false-positives", "false-negatives")
NEEDS_GOLD = frozenset(SUBSETS) - {"all", "predicted"}
ALL_LANGUAGES = "all"


@dataclass
class WordIndex:
    """The attributions' words grouped once: a key id per word occurrence, and each key's most
    common typed form."""

    ids: np.ndarray  # [N]
    keys: list[str]
    shown: list[str]

    @classmethod
    def of(cls, attributions: Any) -> WordIndex:
        keys, ids = np.unique(np.asarray(attributions.keys, dtype=object).astype(str), return_inverse=True)
        forms: dict[int, Counter] = {}
        for i, typed in zip(ids.tolist(), attributions.typed):
            forms.setdefault(i, Counter())[typed] += 1
        shown = [forms[i].most_common(1)[0][0] if i in forms else k for i, k in enumerate(keys.tolist())]
        return cls(ids.astype(np.int64), keys.tolist(), shown)


def check_subset(subset: str, has_gold: bool) -> None:
    """A one-line ``InputError`` for an unknown subset, or a gold one on data without gold labels
    (checked before any model runs)."""
    if subset not in SUBSETS:
        raise InputError(f"unknown subset '{subset}'; choose one of {', '.join(SUBSETS)}")
    if subset in NEEDS_GOLD and not has_gold:
        raise InputError(f"the subset '{subset}' needs gold labels, and this data has none: use all or predicted, or "
                         "give a labelled file")


def subset_mask(subset: str, j: int, predicted: np.ndarray, gold: np.ndarray | None,
                mask: np.ndarray | None) -> np.ndarray:
    """Texts in ``subset`` for label ``j`` (``predicted``, ``gold`` are 0/1 ``[n, L]``)."""
    check_subset(subset, gold is not None)
    p = predicted[:, j].astype(bool)
    if subset == "all":
        return np.ones(len(p), dtype=bool)
    if subset == "predicted":
        return p
    g = gold[:, j].astype(bool)
    annotated = np.ones(len(g), dtype=bool) if mask is None else mask[:, j].astype(bool)
    chosen = {"gold": g, "correct": g == p, "errors": g != p, "false-positives": p & ~g, "false-negatives": g & ~p}
    return chosen[subset] & annotated


@dataclass
class WordStats:
    word: str
    key: str
    count: int
    texts: int
    mean: float
    std: float
    total: float
    examples: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _examples(attributions: Any, rows: np.ndarray, j: int, descending: bool, n: int) -> list[dict[str, Any]]:
    """The ``n`` occurrences (distinct texts) with the strongest score in the direction asked."""
    order = rows[np.argsort(attributions.scores[rows, j], stable=True)]
    out, seen = [], set()
    for r in (order[::-1] if descending else order):
        doc = int(attributions.doc[r])
        if doc in seen:
            continue
        seen.add(doc)
        out.append({"text_index": doc, "text": attributions.texts[doc], "start": int(attributions.start[r]),
                    "end": int(attributions.end[r]), "score": float(attributions.scores[r, j]),
                    "probability": float(attributions.probabilities[doc, j])})
        if len(out) == n:
            break
    return out


def label_words(attributions: Any, index: WordIndex, j: int, texts: np.ndarray, top_k: int = 20,
                min_count: int = 3, n_examples: int = 3) -> dict[str, Any]:
    """For label ``j`` over the texts where ``texts`` (bool ``[n]``) holds: the words that most
    raise and most lower its probability (mean attribution, ``min_count`` occurrences at least)."""
    rows = np.flatnonzero(texts[attributions.doc])
    if not len(rows):
        return {"texts": int(texts.sum()), "raise": [], "lower": []}
    ids = index.ids[rows]
    s = attributions.scores[rows, j].astype(np.float64)
    size = len(index.keys)
    count = np.bincount(ids, minlength=size)
    total = np.bincount(ids, weights=s, minlength=size)
    squares = np.bincount(ids, weights=s * s, minlength=size)
    n_texts = np.bincount(np.unique(np.stack([ids, attributions.doc[rows]]), axis=1)[0], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean * mean, 0.0))
    eligible = np.flatnonzero(count >= max(1, min_count))

    def ranked(descending: bool) -> list[dict[str, Any]]:
        keep = eligible[mean[eligible] > 0] if descending else eligible[mean[eligible] < 0]
        keep = keep[np.lexsort((np.asarray(index.keys, dtype=object)[keep].astype(str),
                                -mean[keep] if descending else mean[keep]))][:top_k]
        return [WordStats(index.shown[k], index.keys[k], int(count[k]), int(n_texts[k]), float(mean[k]), float(std[k]),
                          float(total[k]), _examples(attributions, rows[ids == k], j, descending, n_examples)).to_json()
                for k in keep]

    return {"texts": int(texts.sum()), "raise": ranked(True), "lower": ranked(False)}


def summarize(attributions: Any, thresholds: Sequence[float], gold: np.ndarray | None = None,
              mask: np.ndarray | None = None, labels: Sequence[str] | None = None,
              languages: Sequence[str] | None = None, subset: str = "all", top_k: int = 20, min_count: int = 3,
              n_examples: int = 3, index: WordIndex | None = None) -> dict[str, Any]:
    """The dataset view as one JSON-ready dict: per label, per language (``all`` and each detected
    one, or those asked for), the words that most raise and lower it in ``subset``."""
    names = list(attributions.labels)
    labels = list(labels or names)
    unknown = [lab for lab in labels if lab not in names]
    if unknown:
        raise InputError(f"unknown label(s) {', '.join(unknown)}; this model has {', '.join(names)}")
    present = Counter(attributions.languages)
    languages = list(languages or [ALL_LANGUAGES, *sorted(present)])
    missing = [lang for lang in languages if lang != ALL_LANGUAGES and lang not in present]
    if missing:
        raise InputError(f"no text of language {', '.join(missing)} in this data; it has "
                         f"{', '.join(f'{k} ({v})' for k, v in sorted(present.items()))}")
    if top_k < 1 or min_count < 1 or n_examples < 0:
        raise InputError("top_k and min_count must be at least 1, n_examples at least 0")
    index = index or WordIndex.of(attributions)
    predicted = (attributions.probabilities >= np.asarray(thresholds)[None, :]).astype(np.uint8)
    language = np.asarray(attributions.languages, dtype=object)
    out = {}
    for name in labels:
        j = names.index(name)
        chosen = subset_mask(subset, j, predicted, gold, mask)
        out[name] = {lang: label_words(attributions, index, j, chosen & ((language == lang) | (lang == ALL_LANGUAGES)),
                                       top_k, min_count, n_examples) for lang in languages}
    return {"method": "layer-ig", "params": attributions.params, "subset": subset, "n_texts": len(attributions.texts),
            "languages": dict(sorted(present.items())), "seconds": attributions.seconds, "cached": attributions.cached,
            "attributes_to": "contextual word vectors (layer IG at the head's input), not input tokens; a word is "
                             "grouped by its normalised form", "labels": out}


CSV_COLUMNS = ("label", "language", "direction", "rank", "word", "key", "count", "texts", "mean", "std", "total",
               "example")


def summary_csv(summary: dict[str, Any]) -> str:
    """The summary's word tables as CSV (one row per label, language, direction and word; the first
    example text beside it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for label, per_language in summary["labels"].items():
        for language, block in per_language.items():
            for direction in ("raise", "lower"):
                for rank, w in enumerate(block[direction], 1):
                    example = w["examples"][0]["text"] if w["examples"] else ""
                    writer.writerow([label, language, direction, rank, w["word"], w["key"], w["count"], w["texts"],
                                     f"{w['mean']:.6g}", f"{w['std']:.6g}", f"{w['total']:.6g}", example])
    return buffer.getvalue()
