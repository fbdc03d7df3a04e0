"""Tests for emoscope.thresholds: per-class F1-optimal thresholds, application, validation."""


import numpy as np
import pytest
from sklearn.metrics import f1_score

from emoscope.errors import ConfigError
from emoscope.thresholds import apply_thresholds, choose_thresholds, tune_thresholds, validate_thresholds


def test_threshold_is_the_midpoint_of_the_best_gap():
    y = np.array([[1], [1], [0], [0]])
    probs = np.array([[0.9], [0.8], [0.3], [0.2]])
    # Only the cut between 0.8 and 0.3 separates the classes: F1 = 1 at (0.8 + 0.3) / 2.
    np.testing.assert_allclose(tune_thresholds(y, probs), [0.55])


def test_cut_below_the_lowest_score_is_halfway_to_zero():
    y = np.array([[1], [1], [1]])
    probs = np.array([[0.4], [0.3], [0.2]])
    np.testing.assert_allclose(tune_thresholds(y, probs), [0.1])


def test_ties_go_to_the_threshold_closest_to_half():
    y = np.array([[1], [0], [0], [1], [0]])
    probs = np.array([[0.95], [0.75], [0.55], [0.35], [0.05]])
    # Cuts: 0.85 (tp=1 fp=0 fn=1: F1=2/3), 0.65 (1/2), 0.45 (2/5), 0.2 (tp=2 fp=2 fn=0: 2/3),
    # 0.025 (4/7). 0.85 and 0.2 tie; 0.2 is closer to 0.5 (0.30 away against 0.35).
    np.testing.assert_allclose(tune_thresholds(y, probs), [0.2])


def test_class_without_positives_gets_fallback():
    y = np.array([[0, 1], [0, 0], [0, 1]])
    probs = np.array([[0.2, 0.9], [0.7, 0.1], [0.3, 0.8]])
    np.testing.assert_allclose(tune_thresholds(y, probs, fallback=0.4), [0.4, 0.45])


def test_mask_ignores_unannotated_cells():
    y = np.array([[1, 1], [0, 0], [1, 1], [0, 1]])
    probs = np.array([[0.9, 0.9], [0.2, 0.2], [0.6, 0.6], [0.95, 0.95]])
    mask = np.array([[True, True], [True, True], [True, True], [False, True]])
    # Column 0 without row 4 separates perfectly at (0.6 + 0.2) / 2; column 1 uses all rows.
    thr = tune_thresholds(y, probs, label_mask=mask)
    assert thr[0] == pytest.approx(0.4)
    assert thr[1] == pytest.approx(0.4)
    # A class with no annotated rows at all falls back.
    mask[:, 0] = False
    assert tune_thresholds(y, probs, label_mask=mask)[0] == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reaches_the_best_f1_of_an_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((80, 5)) < 0.3).astype(int)
    probs = np.round(np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1), 1)  # many ties
    thr = tune_thresholds(y, probs)
    for j in range(y.shape[1]):
        candidates = np.unique(np.concatenate([probs[:, j], [0.0, 1.01]]))
        best = max(f1_score(y[:, j], probs[:, j] >= t, zero_division=0) for t in candidates)
        assert f1_score(y[:, j], apply_thresholds(probs, thr)[:, j]) == pytest.approx(best)
        # The threshold never sits on a score: it lies strictly inside a gap.
        assert not np.isin(thr[j], probs[:, j])


def test_grid_search_picks_the_best_grid_value():
    rng = np.random.default_rng(7)
    y = (rng.random((100, 3)) < 0.3).astype(int)
    probs = np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1)
    grid = np.round(np.arange(0.05, 1.0, 0.05), 2)
    thr = tune_thresholds(y, probs, grid=grid)
    assert np.isin(thr, grid).all()
    for j in range(3):
        scores = [f1_score(y[:, j], probs[:, j] >= t, zero_division=0) for t in grid]
        assert f1_score(y[:, j], probs[:, j] >= thr[j]) == pytest.approx(max(scores))
    with pytest.raises(ConfigError):
        tune_thresholds(y, probs, grid=[])


def test_large_matrix_gives_each_class_its_best_cut():
    # Speed is measured by benchmarks/app_speed.py (timed assertions do not belong in tests).
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y = (rng.random((10_000, 28)) < 0.1).astype(int)
    probs = np.round(rng.random(y.shape), 3)
    thr = tune_thresholds(y, probs)
    assert thr.shape == (28,) and ((thr >= 0) & (thr <= 1)).all()
    for j in (0, 13):
        cuts = np.unique(probs[:, j])[::25]
        best = max(f1_score(y[:, j], probs[:, j] >= t, zero_division=0) for t in cuts)
        assert f1_score(y[:, j], probs[:, j] >= thr[j]) >= best - 1e-12


def test_apply_thresholds_uses_greater_or_equal():
    probs = np.array([[0.5, 0.49], [0.7, 0.2]])
    out = apply_thresholds(probs, np.array([0.5, 0.2]))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[1, 1], [1, 1]])
    np.testing.assert_array_equal(apply_thresholds(probs, 0.6), [[0, 0], [1, 0]])


def test_validate_thresholds():
    np.testing.assert_array_equal(validate_thresholds(0.3, 3), [0.3, 0.3, 0.3])
    np.testing.assert_array_equal(validate_thresholds([0.0, 1.0], 2), [0.0, 1.0])
    with pytest.raises(ConfigError, match="expected 3 thresholds"):
        validate_thresholds([0.5, 0.5], 3)
    with pytest.raises(ConfigError, match="NaN"):
        validate_thresholds([0.5, float("nan")], 2)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        validate_thresholds([0.5, 1.2], 2)
    with pytest.raises(ConfigError):
        validate_thresholds([-0.1, 0.5], 2)


def test_rejects_non_probabilities():
    with pytest.raises(ValueError):
        tune_thresholds(np.array([[1], [0]]), np.array([[1.5], [0.2]]))
    with pytest.raises(ValueError):
        tune_thresholds(np.array([[2], [0]]), np.array([[0.5], [0.2]]))


def test_choose_thresholds_tunes_or_falls_back_as_the_recipe_says():
    from emoscope.config import ThresholdConfig

    labels = np.array([[1, 0], [0, 1], [1, 1]])
    probs = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.6]])
    np.testing.assert_allclose(choose_thresholds(ThresholdConfig(tune=False, fallback=0.4), labels, probs), [0.4, 0.4])
    tuned = choose_thresholds(ThresholdConfig(), labels, probs)
    assert ((probs >= tuned) == labels.astype(bool)).all()
    np.testing.assert_array_equal(tuned, tune_thresholds(labels, probs))
