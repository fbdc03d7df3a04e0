"""The reference baseline: TF-IDF word and character n-grams with one logistic regression per label.

It trains in seconds on CPU and sets the bar every transformer model must clear. Per-class
thresholds are tuned on out-of-fold probabilities of the training set, so the baseline needs no
validation split of its own and its dev-set figures are honest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold

from emoscope.errors import ConfigError
from emoscope.thresholds import apply_thresholds, tune_thresholds
from emoscope.tfidf import TfidfModel

__all__ = ["TfidfBaseline"]


class TfidfBaseline:
    """TF-IDF (word 1-2-grams + char_wb 2-5-grams, sublinear tf) and one-vs-rest logistic regression.

    Each label gets its own ``LogisticRegression(class_weight="balanced")``, which re-weights the
    rare positives of that label. Texts are lower-cased and otherwise used as given. The fitted
    model is a :class:`~emoscope.tfidf.TfidfModel` (``model_``), the same model the stack's
    TF-IDF base holds.

    Args:
        min_df: a word or character n-gram must occur in this many training texts to be a feature;
            2 drops the hapaxes that only let the model memorise single texts.
        C: inverse regularisation strength of every logistic regression.
        max_iter: iteration cap of the solver.

    After :meth:`fit`: ``thresholds_`` (``[L]``, tuned on out-of-fold probabilities),
    ``oof_probs_`` (``[n, L]``, the out-of-fold probabilities they were tuned on) and ``n_labels_``.
    """

    def __init__(self, min_df: int = 2, C: float = 1.0, max_iter: int = 1000):
        self.min_df = min_df
        self.C = C
        self.max_iter = max_iter

    def fit(self, texts: Sequence[str], Y: np.ndarray, cv_folds: int = 5, seed: int = 0) -> TfidfBaseline:
        """Fit on ``texts`` and labels ``Y [n, L]`` (0/1), tuning thresholds by ``cv_folds``-fold cross-validation.

        Out-of-fold probabilities come from models fit (vectoriser included) on the other folds;
        per-class thresholds maximise F1 on them; the final model is then refit on all texts.
        """
        texts = list(texts)
        y = np.asarray(Y)
        if y.ndim != 2 or len(texts) != y.shape[0]:
            raise ValueError(f"need one label row per text: {len(texts)} texts, labels of shape {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("Y must contain only 0 and 1")
        if not isinstance(cv_folds, int) or cv_folds < 2:
            raise ConfigError(f"cv_folds must be an integer >= 2 (thresholds are tuned out of fold), got {cv_folds}")
        if len(texts) < cv_folds:
            raise ConfigError(f"{len(texts)} texts cannot be split into {cv_folds} folds; use fewer folds")
        y = y.astype(np.int64)

        oof = np.zeros(y.shape, dtype=np.float64)
        for train_idx, held_idx in KFold(cv_folds, shuffle=True, random_state=seed).split(texts):
            fold = self._fit_model([texts[i] for i in train_idx], y[train_idx])
            oof[held_idx] = fold.predict_proba([texts[i] for i in held_idx])
        self.oof_probs_ = oof
        self.thresholds_ = tune_thresholds(y, oof)
        self.model_ = self._fit_model(texts, y)
        self.n_labels_ = y.shape[1]
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of each label for each text, ``[n, L]`` float64."""
        if not hasattr(self, "model_"):
            raise NotFittedError("this TfidfBaseline is not fitted yet; call fit(texts, Y) first")
        return self.model_.predict_proba(list(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """0/1 labels ``[n, L]`` (``uint8``) using the tuned ``thresholds_``."""
        return apply_thresholds(self.predict_proba(texts), self.thresholds_)

    def _fit_model(self, texts: list[str], y: np.ndarray) -> TfidfModel:
        return TfidfModel.fit(texts, y, min_df=self.min_df, C=self.C, max_iter=self.max_iter)
