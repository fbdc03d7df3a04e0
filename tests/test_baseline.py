"""Tests for emoscope.baseline on a toy corpus where one word decides each label."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from emoscope.baseline import TfidfBaseline
from emoscope.errors import ConfigError
from emoscope.thresholds import tune_thresholds

FILLER = ["the", "day", "was", "long", "we", "walked", "home", "slowly", "after", "rain", "friends", "city"]


def _toy(n: int, seed: int):
    """Texts of filler words; "happy" marks label 0, "angry" label 1; label 2 never occurs."""
    rng = np.random.default_rng(seed)
    texts, Y = [], np.zeros((n, 3), dtype=int)
    for i in range(n):
        words = list(rng.choice(FILLER, size=6))
        for j, cue in enumerate(("happy", "angry")):
            if rng.random() < 0.4:
                words.insert(int(rng.integers(0, len(words))), cue)
                Y[i, j] = 1
        texts.append(" ".join(words))
    return texts, Y


@pytest.fixture(scope="module")
def fitted():
    texts, Y = _toy(80, seed=0)
    return TfidfBaseline().fit(texts, Y, cv_folds=4, seed=0), texts, Y


def test_learns_the_cue_words(fitted):
    model, _, _ = fitted
    test_texts, test_Y = _toy(40, seed=1)
    probs = model.predict_proba(test_texts)
    assert probs.shape == (40, 3)
    for j in (0, 1):
        # Every text with the cue scores higher than every text without it.
        assert probs[test_Y[:, j] == 1, j].min() > probs[test_Y[:, j] == 0, j].max()
    np.testing.assert_array_equal(model.predict(test_texts)[:, :2], test_Y[:, :2])


def test_thresholds_come_from_out_of_fold_probabilities(fitted):
    model, texts, Y = fitted
    assert model.oof_probs_.shape == Y.shape
    np.testing.assert_array_equal(model.thresholds_, tune_thresholds(Y, model.oof_probs_))
    for j in (0, 1):
        # Held-out texts still rank by the cue, though less confidently than the texts the
        # final model was fit on: the thresholds were not tuned on memorised scores.
        assert roc_auc_score(Y[:, j], model.oof_probs_[:, j]) > 0.9
        in_sample = model.predict_proba(texts)[:, j]
        assert _margin(Y[:, j], model.oof_probs_[:, j]) < _margin(Y[:, j], in_sample)


def _margin(y, scores):
    return scores[y == 1].mean() - scores[y == 0].mean()


def test_label_without_positives_is_a_constant_zero(fitted):
    model, _, _ = fitted
    assert model.thresholds_[2] == 0.5
    assert (model.predict_proba(["happy angry day", "rain"])[:, 2] == 0.0).all()


def test_label_missing_from_some_folds_does_not_crash():
    texts, Y = _toy(30, seed=2)
    Y[:, 2] = 0
    Y[0, 2] = 1  # one positive: the folds that hold it out train without any
    model = TfidfBaseline().fit(texts, Y, cv_folds=3, seed=0)
    held_out = model.oof_probs_[0, 2]
    assert held_out == 0.0
    assert np.isfinite(model.predict_proba(texts)).all()


def test_lowercases_texts(fitted):
    model, _, _ = fitted
    np.testing.assert_allclose(model.predict_proba(["HAPPY Day"]), model.predict_proba(["happy day"]))


def test_invalid_use():
    texts, Y = _toy(10, seed=3)
    with pytest.raises(NotFittedError):
        TfidfBaseline().predict_proba(texts)
    with pytest.raises(ConfigError):
        TfidfBaseline().fit(texts, Y, cv_folds=1)
    with pytest.raises(ValueError):
        TfidfBaseline().fit(texts[:5], Y)
