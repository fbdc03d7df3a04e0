"""Tests for emoscope.metrics: hand-computed values, agreement with scikit-learn, masking, speed."""

import json

import numpy as np
import pytest
from sklearn.metrics import (
    hamming_loss,
    jaccard_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from emoscope.errors import ConfigError
from emoscope.metrics import (
    GREATER_IS_BETTER,
    PRIMARY_METRIC,
    compute_metrics,
    format_report,
    label_cooccurrence,
    multilabel_confusion,
)


def _random_case(seed: int, n: int = 200, n_labels: int = 6):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < rng.uniform(0.05, 0.5, n_labels)).astype(int)
    # Rounded scores so that ties occur, which ROC-AUC must handle like scikit-learn.
    probs = np.round(np.clip(0.35 * y + 0.65 * rng.random((n, n_labels)), 0, 1), 2)
    return y, probs


def test_hand_computed_example():
    y = np.array([[1, 0], [1, 1], [0, 0]])
    probs = np.array([[0.9, 0.6], [0.2, 0.7], [0.1, 0.2]])
    # Predictions at 0.5: [[1, 1], [0, 1], [0, 0]].
    r = compute_metrics(y, probs, label_names=["joy", "fear"])
    # joy: tp=1 fn=1 fp=0 tn=1 -> P=1, R=0.5, F1=2/3. fear: tp=1 fp=1 fn=0 tn=1 -> P=0.5, R=1, F1=2/3.
    assert r["per_class"]["joy"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "roc_auc": 1.0,
         "threshold": 0.5, "tp": 1, "fp": 0, "fn": 1, "tn": 1}
    )
    assert r["per_class"]["fear"]["precision"] == pytest.approx(0.5)
    assert r["confusion"] == {"joy": [[1, 0], [1, 1]], "fear": [[1, 1], [0, 1]]}
    # micro: tp=2 fp=1 fn=1 -> P=R=F1=2/3.
    assert r["micro_f1"] == pytest.approx(2 / 3)
    assert r["macro_precision"] == pytest.approx(0.75)
    # weighted by support (joy 2, fear 1): P = (2*1 + 1*0.5)/3.
    assert r["weighted_precision"] == pytest.approx(2.5 / 3)
    # rows: {joy}/{joy,fear} -> J=1/2; {joy,fear}/{fear} -> 1/2; {}/{} -> 1 (SemEval convention).
    assert r["jaccard"] == pytest.approx(2 / 3)
    # hamming: 2 wrong cells out of 6.
    assert r["hamming_loss"] == pytest.approx(1 / 3)
    assert r["n_samples"] == 3


def test_jaccard_counts_empty_gold_and_empty_prediction_as_one():
    y = np.array([[0, 0, 0], [1, 0, 0]])
    probs = np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.1]])
    r = compute_metrics(y, probs)
    # Row 1: nothing gold, nothing predicted -> 1. Row 2: {0} vs {0, 1} -> 1/2.
    assert r["jaccard"] == pytest.approx(0.75)
    assert r["jaccard"] == pytest.approx(jaccard_score(y, probs >= 0.5, average="samples", zero_division=1))
    # The samples F1 keeps scikit-learn's convention: the empty row scores 0, row 2 scores 2/3.
    assert r["samples_f1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed):
    y, probs = _random_case(seed)
    thresholds = np.linspace(0.3, 0.7, y.shape[1])
    pred = (probs >= thresholds).astype(int)
    r = compute_metrics(y, probs, thresholds=thresholds)
    for avg in ("micro", "macro", "weighted", "samples"):
        p, rec, f, _ = precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (r[f"{avg}_precision"], r[f"{avg}_recall"], r[f"{avg}_f1"]) == pytest.approx((p, rec, f))
    p, rec, f, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for j, row in enumerate(r["per_class"].values()):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[j], rec[j], f[j], s[j]))
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y[:, j], probs[:, j]))
        assert row["threshold"] == pytest.approx(thresholds[j])
    assert r["jaccard"] == pytest.approx(jaccard_score(y, pred, average="samples", zero_division=1))
    assert r["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    assert r["roc_auc_macro"] == pytest.approx(roc_auc_score(y, probs, average="macro"))
    np.testing.assert_array_equal(multilabel_confusion(y, pred), multilabel_confusion_matrix(y, pred))


def test_zero_division_gives_zero_and_undefined_auc_is_none():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    probs = np.array([[0.4, 0.1], [0.2, 0.3], [0.3, 0.2]])
    r = compute_metrics(y, probs)
    # Class 0 is never predicted (precision 0/0); class 1 has no positives (recall 0/0).
    assert r["per_class"]["label_0"]["precision"] == 0.0
    assert r["per_class"]["label_1"]["recall"] == 0.0
    assert r["per_class"]["label_1"]["roc_auc"] is None
    # Only class 0 has both positives and negatives, and it ranks them perfectly.
    assert r["roc_auc_macro"] == 1.0
    json.dumps(r, allow_nan=False)


def test_output_is_plain_json():
    y, probs = _random_case(3, n=50)
    r = compute_metrics(y, probs)
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    assert type(r["macro_f1"]) is float and type(r["per_class"]["label_0"]["tp"]) is int
    assert PRIMARY_METRIC in r and GREATER_IS_BETTER is True


def test_label_mask_drops_unannotated_cells():
    y, probs = _random_case(4, n=120, n_labels=4)
    rng = np.random.default_rng(4)
    mask = rng.random(y.shape) < 0.7
    r = compute_metrics(y, probs, label_mask=mask)
    # Scrambling the unannotated cells must change nothing.
    y2 = np.where(mask, y, 1 - y)
    probs2 = np.where(mask, probs, rng.random(y.shape))
    assert compute_metrics(y2, probs2, label_mask=mask) == r
    # Per class, the counts are those of the annotated rows alone.
    for j, row in enumerate(r["per_class"].values()):
        rows = mask[:, j]
        alone = compute_metrics(y[rows, j : j + 1], probs[rows, j : j + 1])["per_class"]["label_0"]
        assert row == alone
    gold, pred = y.astype(bool), probs >= 0.5
    assert r["hamming_loss"] == pytest.approx(((gold != pred) & mask).sum() / mask.sum())
    tp, fp, fn = ((gold & pred & mask).sum(), (~gold & pred & mask).sum(), (gold & ~pred & mask).sum())
    assert r["micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_label_mask_excludes_unannotated_classes_and_rows_from_averages():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    probs = np.array([[0.9, 0.9], [0.1, 0.9], [0.8, 0.1]])
    mask = np.array([[True, False], [True, False], [True, False]])
    r = compute_metrics(y, probs, label_mask=mask)
    # Class 1 is never annotated: the macro average is class 0's perfect F1, not (1 + 0) / 2.
    assert r["macro_f1"] == 1.0
    assert r["per_class"]["label_1"]["support"] == 0
    assert r["confusion"]["label_1"] == [[0, 0], [0, 0]]
    fully_masked = compute_metrics(y, probs, label_mask=np.zeros_like(mask))
    assert fully_masked["hamming_loss"] is None and fully_masked["macro_f1"] is None


def test_invalid_inputs():
    y, probs = _random_case(5, n=10, n_labels=3)
    with pytest.raises(ConfigError):
        compute_metrics(y, probs, thresholds=[0.5, 0.5])
    with pytest.raises(ConfigError):
        compute_metrics(y, probs, thresholds=[0.5, np.nan, 0.5])
    with pytest.raises(ValueError):
        compute_metrics(y, probs[:, :2])
    with pytest.raises(ValueError):
        compute_metrics(y, probs, label_names=["a", "a", "b"])
    with pytest.raises(ValueError):
        multilabel_confusion(y, probs)


def test_label_cooccurrence():
    y = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    counts = label_cooccurrence(y)
    np.testing.assert_array_equal(counts, [[3, 2, 0], [2, 3, 0], [0, 0, 0]])
    # P(j | i): of the 3 examples with label 0, 2 also have label 1.
    np.testing.assert_allclose(label_cooccurrence(y, normalize=True), [[1, 2 / 3, 0], [2 / 3, 1, 0], [0, 0, 0]])


def test_format_report_lists_headlines_and_classes():
    y = np.array([[1, 0], [1, 1], [0, 0]])
    probs = np.array([[0.9, 0.6], [0.2, 0.7], [0.1, 0.2]])
    text = format_report(compute_metrics(y, probs, label_names=["joy", "fear"]))
    lines = text.splitlines()
    assert any(line.split() == ["macro", "0.7500", "0.7500", "0.6667"] for line in lines)
    assert any(line.split() == ["joy", "1.0000", "0.5000", "0.6667", "1.0000", "0.5000", "2"] for line in lines)
    assert "jaccard 0.6667" in text


