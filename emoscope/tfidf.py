"""TF-IDF n-grams and one logistic regression per label, held as plain arrays (no pickle).

:class:`TfidfModel` is the fitted model both the reference baseline (:mod:`emoscope.baseline`)
and the stack's TF-IDF base (``[[bases]] kind = "tfidf"``) use: word 1–2-grams and ``char_wb``
2–5-grams, lower-cased, sublinear tf, each block l2-normalised (scikit-learn's ``TfidfVectorizer``
computes the vocabularies and idf weights), then ``LogisticRegression(class_weight="balanced")``
per label. After fitting it keeps only arrays: each block's vocabulary (its terms in column
order), idf weights, and the regressions' coefficients and intercepts. Features are computed from
those arrays at training and at prediction time alike, so a saved model predicts exactly what the
fitted one did. :meth:`TfidfModel.save` writes ``vocabulary.json`` and ``tfidf.safetensors``:
nothing a bundle would refuse as a pickle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from emoscope.errors import BundleError

BLOCKS = (("word", (1, 2)), ("char_wb", (2, 5)))
"""The n-gram blocks: analyzer and n-gram range (the reference's features)."""
CONSTANT_LOGIT = 10.0
"""The logit given for a label that is constant in the training texts (probability 0 or 1 exactly)."""
VOCABULARY = "vocabulary.json"
WEIGHTS = "tfidf.safetensors"


def text_of_words(words: Sequence[str]) -> str:
    """The text a stack's TF-IDF base reads: the words the stack reads, joined by spaces (the
    same at training and at prediction time)."""
    return " ".join(words)


@dataclass
class TfidfModel:
    """A fitted TF-IDF + per-label logistic regression model (see the module docstring).

    ``constant[j]`` is 0 or 1 for a label that was all 0 (or all 1) in the annotated training
    texts, whose probability is then that constant; NaN for a label with a fitted regression.
    """

    vocabularies: list[list[str]]
    idf: list[np.ndarray]  # float64 [V_b] per block
    coef: np.ndarray  # float64 [L, V]
    intercept: np.ndarray  # float64 [L]
    constant: np.ndarray  # float64 [L]
    min_df: int = 2
    C: float = 1.0

    @classmethod
    def fit(cls, texts: Sequence[str], labels: np.ndarray, mask: np.ndarray | None = None, *, min_df: int = 2,
            C: float = 1.0, max_iter: int = 1000) -> TfidfModel:
        """Fit on ``texts`` and 0/1 ``labels [n, L]``; label j of text i is used only where
        ``mask[i, j]`` (True = annotated; None = all)."""
        texts = list(texts)
        vocabularies, idf = [], []
        for analyzer, ngrams in BLOCKS:
            v = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, lowercase=True, sublinear_tf=True,
                                min_df=min_df, dtype=np.float64).fit(texts)
            terms = [""] * len(v.vocabulary_)
            for term, column in v.vocabulary_.items():
                terms[column] = term
            vocabularies.append(terms)
            idf.append(np.asarray(v.idf_, dtype=np.float64))
        n_labels = labels.shape[1]
        width = sum(len(t) for t in vocabularies)
        model = cls(vocabularies, idf, np.zeros((n_labels, width)), np.zeros(n_labels), np.full(n_labels, np.nan),
                    min_df, C)
        x = model.features(texts)
        for j in range(n_labels):
            rows = np.arange(len(texts)) if mask is None else np.flatnonzero(mask[:, j])
            column = np.asarray(labels)[rows, j].astype(np.int64)
            if len(rows) == 0 or column.min() == column.max():
                model.constant[j] = float(column[0]) if len(rows) else 0.0
                model.intercept[j] = CONSTANT_LOGIT if model.constant[j] else -CONSTANT_LOGIT
                continue
            clf = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter).fit(x[rows], column)
            model.coef[j], model.intercept[j] = clf.coef_[0], clf.intercept_[0]
        return model

    @property
    def n_labels(self) -> int:
        return len(self.intercept)

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The TF-IDF features ``[n, V]``: counts over the kept vocabularies, 1 + log(tf), × idf,
        each block l2-normalised (what ``TfidfVectorizer`` computes)."""
        blocks = []
        for (analyzer, ngrams), terms, idf in zip(BLOCKS, self.vocabularies, self.idf):
            counts = CountVectorizer(analyzer=analyzer, ngram_range=ngrams, lowercase=True, dtype=np.float64,
                                     vocabulary={t: i for i, t in enumerate(terms)}).transform(list(texts))
            counts.data = 1.0 + np.log(counts.data)
            blocks.append(normalize(counts @ sp.diags(idf), norm="l2"))
        return sp.hstack(blocks, format="csr")

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Each label's logit ``[n, L]`` float64 (``±CONSTANT_LOGIT`` for a constant label)."""
        return np.asarray(self.features(texts) @ self.coef.T) + self.intercept

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Each label's probability ``[n, L]`` float64; a constant label's is exactly its constant."""
        probs = 1.0 / (1.0 + np.exp(-self.logits(texts)))
        fixed = ~np.isnan(self.constant)
        probs[:, fixed] = self.constant[fixed]
        return probs

    def save(self, folder: Path, labels: Sequence[str]) -> None:
        """``vocabulary.json`` (the blocks' terms in column order) and ``tfidf.safetensors``
        (idf weights, coefficients, intercepts, constants; the labels and settings as metadata)."""
        folder.mkdir(parents=True, exist_ok=True)
        blocks = [{"analyzer": a, "ngram_range": list(n), "terms": t} for (a, n), t in zip(BLOCKS, self.vocabularies)]
        (folder / VOCABULARY).write_text(json.dumps({"blocks": blocks}, ensure_ascii=False), encoding="utf-8")
        arrays = {"coef": self.coef, "intercept": self.intercept, "constant": self.constant,
                  **{f"idf_{b}": w for b, w in enumerate(self.idf)}}
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}, str(folder / WEIGHTS),
                  metadata={"labels": json.dumps(list(labels), ensure_ascii=False),
                            "settings": json.dumps({"min_df": self.min_df, "C": self.C})})

    @classmethod
    def load(cls, folder: Path, labels: Sequence[str]) -> TfidfModel:
        """Read a saved model; ``BundleError`` when it is unreadable, was saved for other labels
        or other n-gram blocks, or its arrays do not fit together."""
        try:
            raw = json.loads((folder / VOCABULARY).read_text(encoding="utf-8"))
            arrays = load_file(str(folder / WEIGHTS))
            with safe_open(str(folder / WEIGHTS), framework="np") as f:
                metadata = f.metadata() or {}
        except (OSError, ValueError, SafetensorError) as exc:
            raise BundleError(f"cannot read the TF-IDF base in {folder}: {exc}") from exc
        if json.loads(metadata.get("labels", "null")) != list(labels):
            raise BundleError(f"{folder}: the TF-IDF base was trained on other labels than the bundle lists")
        blocks = raw.get("blocks") if isinstance(raw, dict) else None
        if not isinstance(blocks, list) or [(b.get("analyzer"), tuple(b.get("ngram_range", ()))) for b in blocks] != list(BLOCKS):
            raise BundleError(f"{folder / VOCABULARY}: n-gram blocks other than {BLOCKS}")
        settings = json.loads(metadata.get("settings", "{}"))
        model = cls([list(b["terms"]) for b in blocks], [arrays.get(f"idf_{i}") for i in range(len(blocks))],
                    arrays.get("coef"), arrays.get("intercept"), arrays.get("constant"),
                    int(settings.get("min_df", 2)), float(settings.get("C", 1.0)))
        model._check(folder, len(labels))
        return model

    def _check(self, folder: Path, n_labels: int) -> None:
        widths = [len(t) for t in self.vocabularies]
        ok = (all(w is not None and w.shape == (n,) for w, n in zip(self.idf, widths))
              and self.coef is not None and self.coef.shape == (n_labels, sum(widths))
              and all(a is not None and a.shape == (n_labels,) for a in (self.intercept, self.constant)))
        if not ok:
            raise BundleError(f"{folder}: the TF-IDF base's arrays do not fit its vocabulary and {n_labels} labels")
