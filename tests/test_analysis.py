"""Analysis helpers behind the Thresholds, Evaluate and Errors pages, checked against scikit-learn and by hand."""

import numpy as np
import pytest

from emoscope.analysis import error_table, expected_calibration_error, precision_recall_curve, reliability


def test_precision_recall_curve_matches_scikit_learn():
    from sklearn.metrics import precision_recall_curve as sk_curve

    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    p = np.round(rng.random(200), 2)  # ties included
    ours = precision_recall_curve(y, p)
    precision, recall, thresholds = sk_curve(y, p)
    sk = {round(t, 6): (pr, rc) for pr, rc, t in zip(precision[:-1], recall[:-1], thresholds)}
    for t, pr, rc in zip(ours["thresholds"], ours["precision"], ours["recall"]):
        assert sk[round(t, 6)] == pytest.approx((pr, rc))
    masked = precision_recall_curve(y, p, mask=np.arange(200) < 100)
    assert masked["recall"][-1] == pytest.approx(1.0)


def test_reliability_and_calibration_error_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.95, 0.85, 0.9, 0.92])
    table = reliability(y, p, bins=10)
    assert table["count"].sum() == 6
    top = table[table["bin"] == "0.9–1.0"].iloc[0]
    assert top["count"] == 3 and top["observed"] == pytest.approx(2 / 3)
    assert expected_calibration_error(np.ones(4), np.ones(4)) == 0.0


def test_error_table_lists_false_positives_and_negatives_by_confidence():
    texts = ["a", "b", "c", "d", "e"]
    labels = np.array([[1, 0], [0, 0], [0, 1], [1, 0], [0, 0]])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.9], [0.6, 0.1]])
    fp = error_table(texts, labels, probs, np.array([0.5, 0.5]), ["x", "y"], "x", "fp")
    assert fp["text"].tolist() == ["b", "c", "e"]  # highest probability first
    fn = error_table(texts, labels, probs, np.array([0.5, 0.5]), ["x", "y"], "x", "fn")
    assert fn["text"].tolist() == ["d"] and fn["gold"].tolist() == ["x"] and fn["predicted"].tolist() == ["y"]
    assert error_table(texts, labels, probs, np.array([0.5, 0.5]), ["x", "y"], "x", "fp", query="E")["text"].tolist() == ["e"]
    masked = error_table(texts, labels, probs, np.array([0.5, 0.5]), ["x", "y"], "x", "fp",
                         mask=np.array([[1, 1], [0, 1], [1, 1], [1, 1], [1, 1]], dtype=bool))
    assert masked["text"].tolist() == ["c", "e"]
    with pytest.raises(ValueError):
        error_table(texts, labels, probs, np.array([0.5, 0.5]), ["x", "y"], "x", "tp")
