"""The stack's Bi-LSTM meta-learner: padding, base-classifier logits, the gradient-ready copy."""

from __future__ import annotations

import pytest
import torch

from emoscope.models.meta import MetaLearner, gradient_ready


def test_meta_learner_poolings_ignore_padding():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6)
    for pooling in ("attention", "max", "mean"):
        meta = MetaLearner([4, 2], n_labels=3, hidden_size=4, pooling=pooling, dense_size=0).eval()
        short = meta(x[:1, :3], torch.tensor([3]))
        padded = x[:1].clone()
        padded[:, 3:] = 1e3  # garbage after the real words must not matter
        logits, features = meta(padded, torch.tensor([3]), return_features=True)
        torch.testing.assert_close(logits, short)
        assert features.shape == (1, 8)


def test_meta_learner_with_base_logits_starts_from_their_ensemble():
    torch.manual_seed(0)
    meta = MetaLearner([8, 6], 3, hidden_size=5, dense_size=4, n_base=2)
    x, n = torch.randn(4, 7, 14), torch.tensor([7, 3, 1, 5])
    base = torch.randn(4, 6)
    expected = (base[:, :3] + base[:, 3:]) / 2  # per-label mean of the two classifiers' logits
    torch.testing.assert_close(meta.eval()(x, n, base=base), expected)
    with pytest.raises(ValueError, match="reads the logits of 2 base classifiers"):
        meta(x, n)
    # the correction path trains: one step moves the output away from the plain ensemble
    opt = torch.optim.SGD(meta.parameters(), lr=0.5)
    torch.nn.functional.binary_cross_entropy_with_logits(meta.train()(x, n, base=base), torch.ones(4, 3)).backward()
    opt.step()
    assert not torch.allclose(meta.eval()(x, n, base=base), expected)


def test_gradient_ready_meta_learner_computes_the_same_function_and_leaves_the_original_alone():
    """cuDNN refuses an LSTM backward in eval mode, so explanations differentiate through a copy
    whose LSTM is in training mode with its between-layer dropout off: same outputs, even for a
    two-layer LSTM with dropout, and the shared original stays in eval mode, untouched."""

    torch.manual_seed(0)
    meta = MetaLearner([4, 2], n_labels=3, hidden_size=5, layers=2, dropout=0.5, pooling="attention").eval()
    ready = gradient_ready(meta)
    assert ready.lstm.training and ready.lstm.dropout == 0.0 and not ready.training
    assert not meta.lstm.training and meta.lstm.dropout == 0.5
    x = torch.randn(3, 6, 6, requires_grad=True)
    n = torch.tensor([6, 4, 1])
    torch.testing.assert_close(ready(x, n), meta(x, n))
    torch.testing.assert_close(ready(x, n), ready(x, n))  # no dropout left anywhere
    grad, = torch.autograd.grad(ready(x, n)[:, 1].sum(), x)
    expected, = torch.autograd.grad(meta(x, n)[:, 1].sum(), x)
    torch.testing.assert_close(grad, expected)
