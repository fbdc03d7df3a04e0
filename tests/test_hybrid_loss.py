"""The hybrid loss's terms against values computed by hand, and its stability."""

import math

import numpy as np
import pytest
import torch

from emoscope.errors import ConfigError
from emoscope.losses import (
    build_loss,
    cooccurrence_target,
    label_correlation_loss,
    supervised_contrastive_loss,
    weighted_bce_loss,
)


def test_cooccurrence_target_is_conditional_rates():
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0]])
    # P(1|0) = 1/2, P(0|1) = 1/2, label 2 never occurs -> zero row.
    np.testing.assert_allclose(cooccurrence_target(Y), [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 0]])


def test_cooccurrence_target_ignores_unannotated_rows():
    Y = np.array([[1, 1], [1, 0]])
    mask = np.array([[True, True], [True, False]])  # label 1 not annotated in row 2
    np.testing.assert_allclose(cooccurrence_target(Y, mask)[0, 1], 1.0)


def test_label_correlation_by_hand():
    # p = 0.5 everywhere: joint[i,j] = 2 * 0.25 = 0.5, base = 2 * 0.5 = 1 -> pred = 0.5 off-diagonal.
    # target P(1|0) = 1, P(0|1) = 0.5: gaps (0.5-1)^2 = 0.25 and 0, equal weights -> 0.125.
    logits = torch.zeros(2, 2)
    target = torch.tensor([[1.0, 1.0], [0.5, 1.0]])
    assert label_correlation_loss(logits, target).item() == pytest.approx(0.125, abs=1e-6)


def test_label_correlation_is_zero_when_predictions_match():
    logits = torch.tensor([[20.0, 20.0, -20.0], [20.0, -20.0, -20.0]])
    target = torch.tensor(cooccurrence_target(np.array([[1, 1, 0], [1, 0, 0]])), dtype=torch.float32)
    assert label_correlation_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_by_hand():
    # z0 = z1 = (1, 0), z2 = (0, 1), temperature 1. Anchors 0 and 1 share a label (Jaccard 1) and
    # not with 2; anchor 2 has no positive. loss_0 = -(1 - log(e^1 + e^0)) = log(e + 1) - 1.
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[1, 0], [1, 0], [0, 1]])
    expected = math.log(math.e + 1) - 1
    assert supervised_contrastive_loss(features, targets, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)


def test_contrastive_weights_positives_by_label_overlap():
    # Anchor 0 = {a, b}; 1 = {a} (Jaccard 1/2); 2 = {a, b} (Jaccard 1). Features orthogonal-ish:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    targets = torch.tensor([[1, 1], [1, 0], [1, 1]])
    s = torch.tensor([1.0, 0.0, 1.0])  # similarities of anchor 0 to 0, 1, 2 at temperature 1
    log_den = math.log(math.exp(0.0) + math.exp(1.0))  # over k != 0
    loss0 = -(0.5 * (s[1] - log_den) + 1.0 * (s[2] - log_den)) / 1.5
    # anchor 1: positives 0 and 2, each Jaccard 1/2; similarities 0 and 0.
    loss1 = -((0.0 - math.log(2)) * 0.5 * 2) / 1.0
    # anchor 2: positives 0 (Jaccard 1, sim 1) and 1 (1/2, sim 0).
    loss2 = loss0
    expected = (float(loss0) + loss1 + float(loss2)) / 3
    assert supervised_contrastive_loss(features, targets, temperature=1.0).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("features, targets", [
    (torch.randn(1, 4, requires_grad=True), torch.tensor([[1, 0]])),           # one example
    (torch.randn(3, 4, requires_grad=True), torch.zeros(3, 2, dtype=torch.long)),  # no positives
])
def test_contrastive_is_zero_and_differentiable_without_positive_pairs(features, targets):
    loss = supervised_contrastive_loss(features, targets)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(features.grad).all()


def test_hybrid_is_the_weighted_sum_of_its_terms():
    Y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    loss = build_loss("hybrid", Y, correlation_weight=0.3, contrastive_weight=0.2, temperature=0.5)
    torch.manual_seed(0)
    logits, features = torch.randn(4, 2), torch.randn(4, 8)
    targets = torch.tensor(Y)
    expected = (weighted_bce_loss(logits, targets, loss.pos_weight)
                + 0.3 * label_correlation_loss(logits, loss.cooccurrence)
                + 0.2 * supervised_contrastive_loss(features, targets, 0.5))
    assert loss(logits, targets.float(), features=features).item() == pytest.approx(expected.item(), abs=1e-6)


def test_hybrid_terms_switch_off_and_need_features():
    Y = np.array([[1, 0], [0, 1]])
    bce_only = build_loss("hybrid", Y, correlation_weight=0.0, contrastive_weight=0.0)
    logits, targets = torch.randn(2, 2), torch.tensor(Y).float()
    assert bce_only(logits, targets).item() == pytest.approx(weighted_bce_loss(logits, targets, bce_only.pos_weight).item())
    with pytest.raises(ValueError, match="features"):
        build_loss("hybrid", Y)(logits, targets)
    with pytest.raises(ConfigError, match="temperature"):
        build_loss("hybrid", Y, temperature=0.0)


def test_hybrid_is_stable_on_a_single_example_with_extreme_logits():
    loss = build_loss("hybrid", np.array([[1, 0, 1], [0, 1, 0]]))
    logits = torch.tensor([[100.0, -100.0, 100.0]], requires_grad=True)
    features = torch.randn(1, 8, requires_grad=True)
    value = loss(logits, torch.tensor([[0.0, 0.0, 0.0]]), features=features)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all() and torch.isfinite(features.grad).all()
