"""Tests for emoscope.losses: hand-computed values, torch agreement, masking, stability, the registry."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emoscope import losses
from emoscope.errors import ConfigError
from emoscope.losses import (
    MultiLabelLoss,
    bce_loss,
    build_loss,
    class_frequencies,
    focal_alpha_from_frequencies,
    focal_loss,
    inverse_frequency_weights,
    per_class_bce,
    register_loss,
    weighted_bce_loss,
)

LN2 = math.log(2.0)
LN43 = math.log(4.0 / 3.0)


def _hand_case():
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4.
    logits = torch.tensor([[0.0, math.log(3.0)], [-math.log(3.0), 0.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    # Cell losses -log p_t: (0,0) y=1 p=1/2 -> ln 2; (0,1) y=1 p=3/4 -> ln 4/3;
    # (1,0) y=0 p=1/4 -> -ln(3/4) = ln 4/3; (1,1) y=0 p=1/2 -> ln 2.
    return logits, targets


def _random_case(seed=0, shape=(6, 4)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(shape, generator=g) < 0.4).to(torch.float64)
    return logits, targets


def test_bce_by_hand():
    logits, targets = _hand_case()
    assert bce_loss(logits, targets).item() == pytest.approx((2 * LN2 + 2 * LN43) / 4)


def test_weighted_bce_by_hand():
    logits, targets = _hand_case()
    # Weights [2, 3] scale the positive cells (row 0): (2 ln2 + 3 ln4/3 + ln4/3 + ln2) / 4.
    expected = (3 * LN2 + 4 * LN43) / 4
    assert weighted_bce_loss(logits, targets, np.array([2.0, 3.0])).item() == pytest.approx(expected)


def test_focal_by_hand():
    logits, targets = _hand_case()
    alpha = np.array([0.25, 0.75])
    # alpha_t * (1 - p_t)^2 * (-log p_t) per cell:
    # (0,0) y=1: 0.25 * (1/2)^2 * ln2 = ln2/16      (0,1) y=1: 0.75 * (1/4)^2 * ln4/3 = 3/64 ln4/3
    # (1,0) y=0: (1-0.25) * (1/4)^2 * ln4/3 = 3/64 ln4/3   (1,1) y=0: (1-0.75) * (1/2)^2 * ln2 = ln2/16
    expected = (LN2 / 8 + 3 / 32 * LN43) / 4
    assert focal_loss(logits, targets, alpha, gamma=2.0).item() == pytest.approx(expected)


def test_masked_by_hand():
    logits, targets = _hand_case()
    mask = torch.tensor([[True, False], [True, True]])
    # The masked cell (0,1) drops out and the mean is over the 3 remaining cells.
    assert bce_loss(logits, targets, mask).item() == pytest.approx((LN2 + LN43 + LN2) / 3)
    per_class = per_class_bce(logits, targets, mask)
    torch.testing.assert_close(per_class, torch.tensor([(LN2 + LN43) / 2, LN2], dtype=torch.float64))


def test_per_class_bce_by_hand():
    logits, targets = _hand_case()
    expected = torch.tensor([(LN2 + LN43) / 2, (LN43 + LN2) / 2], dtype=torch.float64)
    torch.testing.assert_close(per_class_bce(logits, targets), expected)
    # A class with every cell masked reports 0.
    mask = torch.tensor([[True, False], [True, False]])
    assert per_class_bce(logits, targets, mask)[1].item() == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_torch(seed):
    logits, targets = _random_case(seed)
    weights = torch.tensor([1.0, 2.5, 0.5, 7.0], dtype=torch.float64)
    torch.testing.assert_close(bce_loss(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    torch.testing.assert_close(
        weighted_bce_loss(logits, targets, weights),
        F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights),
    )
    torch.testing.assert_close(
        per_class_bce(logits, targets),
        F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=0),
    )


def test_focal_with_gamma_zero_and_half_alpha_is_half_bce():
    logits, targets = _random_case(2)
    torch.testing.assert_close(focal_loss(logits, targets, 0.5, gamma=0.0), 0.5 * bce_loss(logits, targets))


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda x, y, m=None: bce_loss(x, y, m),
        lambda x, y, m=None: weighted_bce_loss(x, y, np.array([1.0, 3.0, 2.0, 9.0]), m),
        lambda x, y, m=None: focal_loss(x, y, np.array([0.25, 0.5, 0.75, 0.9]), 2.0, m),
        lambda x, y, m=None: focal_loss(x, y, 0.25, 0.5, m),
    ],
    ids=["bce", "weighted_bce", "focal", "focal_gamma_half"],
)
def test_masking_stability_and_gradients(loss_fn):
    logits, targets = _random_case(3)
    mask = torch.rand(logits.shape, generator=torch.Generator().manual_seed(3)) < 0.6
    # Masking equals computing on the kept cells only, whatever the masked cells hold.
    scrambled = torch.where(mask, logits, torch.full_like(logits, 1e4))
    expected = _mean_over_cells(loss_fn, logits, targets, mask)
    assert loss_fn(scrambled, targets, mask).item() == pytest.approx(expected)
    # Extreme logits, right and wrong, give finite losses and gradients.
    extreme = torch.tensor([[100.0, -100.0, 100.0, -100.0]] * 2, requires_grad=True)
    ext_targets = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    value = loss_fn(extreme, ext_targets)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(extreme.grad).all()
    # A fully masked batch gives 0 that still backpropagates (zero gradients, no NaN).
    x = logits.clone().requires_grad_(True)
    empty = loss_fn(x, targets, torch.zeros_like(mask))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def _mean_over_cells(loss_fn, logits, targets, mask):
    """Mean over the kept cells of each cell's loss, scored alone (in its own column, so class weights apply)."""
    values = []
    for i, j in mask.nonzero().tolist():
        x = torch.full_like(logits[:1], 0.0)
        y = torch.zeros_like(targets[:1])
        cell = torch.zeros_like(mask[:1])
        x[0, j], y[0, j], cell[0, j] = logits[i, j], targets[i, j], True
        values.append(loss_fn(x, y, cell))
    return torch.stack(values).mean().item()


def test_class_frequencies_and_inverse_weights():
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(class_frequencies(Y), [0.75, 0.25, 0.0])
    # f = [0.75, 0.25, 0]: w = [1, 3] and the absent class takes the largest finite weight, 3.
    np.testing.assert_allclose(inverse_frequency_weights(Y), [1.0, 3.0, 3.0])
    np.testing.assert_allclose(inverse_frequency_weights(Y, max_weight=2.0), [1.0, 2.0, 2.0])
    np.testing.assert_allclose(inverse_frequency_weights(np.zeros((3, 2))), [1.0, 1.0])
    with pytest.raises(ConfigError):
        inverse_frequency_weights(Y, max_weight=0.5)


def test_frequencies_count_only_annotated_rows():
    Y = np.array([[1, 1], [0, 1], [0, 0], [1, 0]])
    mask = np.array([[True, True], [True, False], [False, True], [False, True]])
    # Class 0 annotated in rows 1-2 (one positive of two); class 1 in rows 1, 3, 4 (one of three).
    np.testing.assert_allclose(class_frequencies(Y, mask), [0.5, 1 / 3])
    np.testing.assert_allclose(class_frequencies(Y, np.zeros_like(mask)), [0.0, 0.0])


def test_focal_alpha_from_frequencies():
    np.testing.assert_allclose(focal_alpha_from_frequencies(np.array([0.5, 0.1, 0.9, 0.0])), [0.5, 0.9, 0.25, 0.95])


def test_build_loss_matches_the_functions_and_holds_buffers():
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]])
    logits, targets = _random_case(4, shape=(5, 3))
    weights = inverse_frequency_weights(Y)
    alpha = focal_alpha_from_frequencies(class_frequencies(Y))

    torch.testing.assert_close(build_loss("bce", Y)(logits, targets), bce_loss(logits, targets))
    wbce = build_loss("weighted_bce", Y).to(torch.float64)
    torch.testing.assert_close(wbce(logits, targets), weighted_bce_loss(logits, targets, weights))
    np.testing.assert_allclose(wbce.state_dict()["pos_weight"].numpy(), weights)
    focal = build_loss("focal", Y, gamma=1.5).to(torch.float64)
    torch.testing.assert_close(focal(logits, targets), focal_loss(logits, targets, alpha, 1.5))
    # .to() moves the buffers with the module.
    assert focal.alpha.dtype == torch.float64
    fixed = build_loss("focal", Y, alpha=0.25)
    assert fixed.alpha.tolist() == [0.25, 0.25, 0.25]
    # The training loop may always pass the pooled features.
    assert isinstance(wbce, MultiLabelLoss)
    torch.testing.assert_close(wbce(logits, targets, features=torch.zeros(5, 8)), wbce(logits, targets))


def test_build_loss_rejects_unknown_names_and_options():
    Y = np.zeros((2, 2))
    with pytest.raises(ConfigError, match="bce, focal, hybrid, weighted_bce"):
        build_loss("hinge", Y)
    with pytest.raises(ConfigError, match="gamma, alpha"):
        build_loss("focal", Y, beta=2)
    with pytest.raises(ConfigError):
        build_loss("focal", Y, alpha=[0.5, 1.5])


def test_registry_is_extensible(monkeypatch):
    from emoscope.losses import registry

    monkeypatch.setattr(registry, "LOSSES", dict(registry.LOSSES))

    class Doubled(MultiLabelLoss):
        def forward(self, logits, targets, mask=None, features=None):
            return 2 * bce_loss(logits, targets, mask)

    @register_loss("doubled")
    def _make(train_labels, train_mask):
        return Doubled()

    logits, targets = _random_case(5)
    torch.testing.assert_close(build_loss("doubled", np.zeros((2, 4)))(logits, targets), 2 * bce_loss(logits, targets))
    with pytest.raises(ValueError):
        register_loss("doubled")(_make)


@pytest.mark.parametrize("name", ["bce", "weighted_bce", "focal", "hybrid"])
def test_a_loss_section_maps_onto_its_factory_options_and_defaults(name):
    """A recipe's [loss] section names a registered loss, sets only options its factory takes, and
    its defaults are the factory's (one home: emoscope.losses)."""
    import inspect

    from emoscope.config import LossConfig as RecipeLossConfig

    assert RecipeLossConfig is losses.LossConfig
    section = losses.LossConfig(name=name, max_weight=5.0)
    options = losses.loss_options(section)
    factory = inspect.signature(losses.LOSSES[name]).parameters
    assert set(options) <= set(factory) - {"train_labels", "train_mask"}
    for option, parameter in factory.items():
        if option in losses.loss_options(losses.LossConfig(name="hybrid")) or option == "gamma":
            assert parameter.default == getattr(losses.LossConfig, option), option
    Y = np.array([[1, 0], [0, 1], [1, 1]])
    built = losses.loss_from_config(section, Y)
    assert isinstance(built, MultiLabelLoss)
    assert losses.loss_names() == ("bce", "weighted_bce", "focal", "hybrid")
    with pytest.raises(ConfigError, match="loss.name must be one of bce, weighted_bce, focal, hybrid"):
        losses.LossConfig(name="mse")
