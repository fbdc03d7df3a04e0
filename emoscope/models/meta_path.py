"""The meta-learner along a straight path between two sets of word vectors, fast and exact.

Integrated Gradients at the meta-learner's input asks for the logits at
``v = b + s_w (x - b)`` per word ``w`` for many scales ``s`` (steps times labels) and their
gradients in ``s``. Building those vectors means one ``[rows, words, D]`` input per step (D =
1,152 for three small encoders) and the LSTM's input projection over all of them, forward and
backward: about 1 s for 11 labels on two CPU cores. But every step lies on the same line, and
the meta-learner's first operations are a per-encoder LayerNorm and a linear map, so

    W LN_k(b_k + s d_k) = (W_k(γ_k ⊙ c_b) + s W_k(γ_k ⊙ c_d)) / σ_k(s) + W_k β_k,
    σ_k(s)² = var(c_b) + 2 s cov(c_b, c_d) + s² var(c_d) + eps

(``c`` the per-word centred ``b_k`` and ``d_k = x_k - b_k``): the LSTM's input gates at any ``s`` come
from two projections per word computed once. The rest of the Bi-LSTM runs as its own cell loop
over those gates (the same equations as ``nn.LSTM``, gate order i, f, g, o; padding positions
reset the state, as packing does), and the pooling, dense layers and base logits are the
meta-learner's own modules, run unchanged: a shallow copy of it whose LayerNorms are identities
and whose LSTM is :class:`_PathLSTM`, fed the scales as a one-feature input. The result equals
``meta(b + s (x - b))`` to float precision (tested), for any pooling, layer count and base logits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from emoscope.models.meta import MetaEnsemble, MetaLearner


def _input_projections(meta: MetaLearner, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per text and word: ``P, Q [B, W, K, 2, 4H]`` (both directions' input gates) and the variance
    terms ``[B, W, K]`` of each encoder's LayerNorm along the path, and the constant ``[2 * 4H]``."""
    lstm = meta.lstm
    weight = torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse])  # [G, D]
    const = torch.cat([lstm.bias_ih_l0 + lstm.bias_hh_l0, lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse])
    ps, qs, vbb, vbd, vdd, eps = [], [], [], [], [], []
    start = 0
    for norm, size in zip(meta.norms, meta.input_sizes):
        cols = slice(start, start + size)
        start += size
        bk, dk = b[..., cols], x[..., cols] - b[..., cols]
        cb, cd = bk - bk.mean(-1, keepdim=True), dk - dk.mean(-1, keepdim=True)
        gamma = norm.weight if norm.weight is not None else torch.ones(size, device=x.device)
        w = weight[:, cols]
        ps.append((cb * gamma) @ w.T)
        qs.append((cd * gamma) @ w.T)
        vbb.append((cb * cb).mean(-1))
        vbd.append((cb * cd).mean(-1))
        vdd.append((cd * cd).mean(-1))
        eps.append(torch.full_like(vbb[-1], norm.eps))
        if norm.bias is not None:
            const = const + norm.bias @ w.T
    stack = (lambda t: torch.stack(t, dim=2))
    return (stack(ps).unflatten(-1, (2, -1)), stack(qs).unflatten(-1, (2, -1)), stack(vbb), stack(vbd), stack(vdd),
            stack(eps), const)


def _pair_steps(gates: torch.Tensor) -> torch.Tensor:
    """Gates ``[R, W, 2, 4H]`` → ``[W, 2, R, 4H]``: step ``i`` reads position ``i`` forwards and
    position ``W-1-i`` backwards."""
    return torch.stack([gates[:, :, 0], gates[:, :, 1].flip(1)]).permute(2, 0, 1, 3)


def _bilstm_layer(steps: torch.Tensor, mask: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:
    """One bidirectional LSTM layer from its paired input gates ``[W, 2, R, 4H]`` (:func:`_pair_steps`;
    both directions in one loop, ``w_hh [2, 4H, H]``); ``mask [R, W]``: real positions. Outputs
    ``[R, W, 2H]``, zero at padding. The gates arrive paired, and each step's states are kept whole,
    because indexing a big tensor inside the loop makes autograd zero-fill its size at every step."""
    width, _, rows, _ = steps.shape
    hidden = w_hh.shape[-1]
    h = steps.new_zeros((2, rows, hidden))
    c = steps.new_zeros((2, rows, hidden))
    w_t = w_hh.transpose(1, 2)
    m = mask.to(steps.dtype)
    keeps = torch.stack([m, m.flip(1)]).permute(2, 0, 1)[..., None]  # [W, 2, R, 1]
    states = []
    for i, (gates, keep) in enumerate(zip(steps.unbind(0), keeps.unbind(0))):
        g = torch.baddbmm(gates, h, w_t)
        gi, gf, gg, go = g.chunk(4, dim=-1)
        c_new = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
        h_new = torch.sigmoid(go) * torch.tanh(c_new)
        h, c = h_new * keep, c_new * keep  # padding resets the state, as packing does
        states.append(h)
    states = torch.stack(states)  # [W, 2, R, H]
    return torch.cat([states[:, 0], states[:, 1].flip(0)], dim=-1).transpose(0, 1)


class _PathLSTM(nn.Module):
    """Stands in for the meta-learner's LSTM: reads the scales ``s`` (the one-feature packed input)
    and runs the real LSTM's weights from the precomputed projections."""

    def __init__(self, lstm: nn.LSTM, projections: tuple[torch.Tensor, ...], texts: int, per_text: int):
        super().__init__()
        self.lstm, self.projections, self.texts, self.per_text = lstm, projections, texts, per_text

    def forward(self, packed, hx=None):
        s, lengths = nn.utils.rnn.pad_packed_sequence(packed, batch_first=True)
        s = s[..., 0]
        width = s.shape[1]
        p, q, vbb, vbd, vdd, eps, const = (t[:, :width] if t.dim() > 1 else t for t in self.projections)
        s4 = s.view(self.texts, self.per_text, width, 1)
        inv = torch.rsqrt(vbb[:, None] + 2 * s4 * vbd[:, None] + s4 * s4 * vdd[:, None] + eps[:, None])  # [B, n, W, K]
        # paired per step (position i forwards, W-1-i backwards): flip the small factors, not the gates
        p_pair = torch.stack([p[..., 0, :], p[..., 1, :].flip(1)], dim=2)  # [B, W, 2, K, 4H]
        q_pair = torch.stack([q[..., 0, :], q[..., 1, :].flip(1)], dim=2)
        inv_pair = torch.stack([inv, inv.flip(2)], dim=3)  # [B, n, W, 2, K]
        c_pair = const.view(2, -1)[:, None]  # [2, 1, 4H]
        steps = (torch.einsum("bnwdk,bwdkg->wdbng", inv_pair, p_pair)
                 + torch.einsum("bnwdk,bwdkg->wdbng", torch.stack([s4, s4.flip(2)], dim=3) * inv_pair, q_pair))
        steps = steps.reshape(width, 2, len(s), -1) + c_pair
        mask = torch.arange(width, device=s.device)[None, :] < lengths.to(s.device)[:, None]
        lstm = self.lstm
        out = _bilstm_layer(steps, mask, torch.stack([lstm.weight_hh_l0, lstm.weight_hh_l0_reverse]))
        for layer in range(1, lstm.num_layers):
            names = (f"l{layer}", f"l{layer}_reverse")
            w_ih = torch.stack([getattr(lstm, f"weight_ih_{n}") for n in names])  # [2, 4H, 2H]
            bias = torch.stack([getattr(lstm, f"bias_ih_{n}") + getattr(lstm, f"bias_hh_{n}") for n in names])
            layer_gates = torch.einsum("rwi,dgi->rwdg", out, w_ih) + bias
            out = _bilstm_layer(_pair_steps(layer_gates), mask,
                                torch.stack([getattr(lstm, f"weight_hh_{n}") for n in names]))
        return nn.utils.rnn.pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False), None


def path_logits(meta: MetaLearner | MetaEnsemble, x: torch.Tensor, b: torch.Tensor, s: torch.Tensor, n_words: torch.Tensor,
                base: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``[B, n, L]`` of ``meta`` at ``b + s[..., None] * (x - b)`` for the ``B`` texts of
    ``x``, ``b [B, W, D]`` (their word vectors and baselines) and ``n`` scale rows per text,
    ``s [B, n, W]``; ``n_words [B]``, ``base [B, n_base * L]`` (the base classifiers' logits, held
    fixed along the path). Differentiable in ``s``; equals the meta-learner on the built vectors.
    For an ensemble: the mean of its members' path logits, as its forward is the mean of theirs."""
    if isinstance(meta, MetaEnsemble):
        return torch.stack([path_logits(m, x, b, s, n_words, base) for m in meta.members]).mean(0)
    texts, per_text, width = s.shape
    if meta.lstm.proj_size or not meta.lstm.bidirectional:
        raise ValueError("path_logits follows the meta-learner's bidirectional LSTM without projections")
    runner = copy.copy(meta)  # a shallow copy: the same weights and pooling, its own module table
    runner._modules = dict(meta._modules)
    runner.input_sizes = [1]
    runner.norms = nn.ModuleList([nn.Identity()])
    runner.lstm = _PathLSTM(meta.lstm, _input_projections(meta, x.float(), b.float()), texts, per_text)
    rows_words = n_words.to(s.device).repeat_interleave(per_text)
    rows_base = None if base is None else base.repeat_interleave(per_text, dim=0)
    logits = runner(s.reshape(texts * per_text, width, 1), rows_words, base=rows_base)
    return logits.view(texts, per_text, -1)
