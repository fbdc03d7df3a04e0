"""Integrated Gradients (Sundararajan et al., 2017) through the whole model at once.

Every encoder's word embeddings move together from a baseline (the padding embedding at every
word token; special and prefix tokens keep their own) with Captum's Gauss-Legendre steps and
weights; each step batch needs one forward pass for all requested labels, then one backward
pass per label over the kept graph. Attributions = (x - baseline) * the weighted gradients,
summed over the hidden size, over each word's sub-words and over the encoders. The result
equals Captum's ``IntegratedGradients`` label by label (tested); the completeness gap is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from emoscope.errors import InputError
from emoscope.explain.model import ExplainModel
from emoscope.explain.params import ParamSpec, Widget, precision_spec
from emoscope.explain.registry import Estimate, estimates_wanted, register_method, report_progress
from emoscope.models import autocast_context, resolve_precision
from emoscope.words import token_word_matrix

PARAMS = (
    ParamSpec("n_steps", int, 50, "integration steps from the baseline to the text (more: a smaller completeness gap)",
              min=2, widget=Widget("Steps", value=32, presets=(8, 16, 32, 50, 100))),
    ParamSpec("internal_batch_size", int, 16, "steps per forward pass (bounds the memory)", min=1, widget=None),
    precision_spec(),
)


COARSE_STEPS = 2  # Gauss-Legendre points of the coarse pass that gives a streamed run its first estimate


def _step_grads(model: ExplainModel, inputs: list[torch.Tensor], bases: list[torch.Tensor], batches: list[dict],
                n_words: int, target: torch.Tensor, points, precision: str) -> Iterator[tuple[torch.Tensor, ...]]:
    """For one step batch (``points`` along the path): one forward pass for all labels, then per
    label its gradients at each point ``[c, T_k, H_k]``, per encoder."""
    a = torch.as_tensor(points, dtype=inputs[0].dtype, device=inputs[0].device)
    scaled = [(b + a[:, None, None] * (x - b)).requires_grad_(True) for x, b in zip(inputs, bases)]
    with autocast_context(model.device, precision):
        probs = model.forward_embeds(scaled, batches, n_words)[:, target]  # [c, m]
    m = len(target)
    for r in range(m):
        yield torch.autograd.grad(probs[:, r].sum(), scaled, retain_graph=r < m - 1)


def _coarse_grads(model: ExplainModel, inputs: list[torch.Tensor], bases: list[torch.Tensor], batches: list[dict],
                  n_words: int, target: torch.Tensor, points, precision: str) -> list[tuple[torch.Tensor, ...]]:
    """The coarse pass: per label, its gradients at ``points`` ``[c, T_k, H_k]`` per encoder, as
    :func:`_step_grads` gives them (equal up to float rounding), but from one backward pass with a
    batch of one-hot output gradients (``is_grads_batched``) instead of one backward per label:
    the first estimate waits for one pass, not ``m``."""
    a = torch.as_tensor(points, dtype=inputs[0].dtype, device=inputs[0].device)
    scaled = [(b + a[:, None, None] * (x - b)).requires_grad_(True) for x, b in zip(inputs, bases)]
    with autocast_context(model.device, precision):
        probs = model.forward_embeds(scaled, batches, n_words)[:, target]  # [c, m]
    m = len(target)
    one_hot = torch.eye(m, dtype=probs.dtype, device=probs.device)[:, None, :].expand(m, len(points), m)
    grads = torch.autograd.grad(probs, scaled, grad_outputs=one_hot, is_grads_batched=True)  # per encoder [m, c, T, H]
    return [tuple(g[r] for g in grads) for r in range(m)]


def _rest_coefficients(points: list[float], weights: list[float], coarse_points: list[float]) -> np.ndarray:
    """``[n_steps + 1, 2]``: row d = how much of each coarse gradient stands in for the steps from
    d on (their weights times the line through the two coarse gradients, at their points)."""
    share = (np.asarray(points) - coarse_points[0]) / (coarse_points[1] - coarse_points[0])
    parts = np.asarray(weights)[:, None] * np.stack([1.0 - share, share], axis=1)
    return np.concatenate([np.cumsum(parts[::-1], axis=0)[::-1], np.zeros((1, 2))])


def _integrate(model: ExplainModel, inputs: list[torch.Tensor], bases: list[torch.Tensor], batches: list[dict],
               n_words: int, indices: list[int], n_steps: int, internal_batch_size: int, precision: str,
               estimate: Callable[[list[torch.Tensor], list[int]], Estimate] | None):
    """Per encoder, the step-weighted sum of the gradients of each label ``[m, T_k, H_k]`` (the
    generator's return value). With ``estimate``, a coarse pass of ``COARSE_STEPS`` points comes
    first and an estimate is yielded after it and after each label of each step batch: the exact
    sums so far, and for each step not yet taken its weight times the gradient read off the line
    through the coarse pass's two gradients (so the first estimate is the coarse pass's own
    2-point Gauss-Legendre integral). The exact step batches and their order are those of a run
    without estimates, so the final sums are bit for bit the same."""
    from captum.attr._utils.approximation_methods import approximation_parameters  # third-party, loaded only for IG

    step_sizes, alphas = approximation_parameters("gausslegendre")
    weights, points = step_sizes(n_steps), alphas(n_steps)
    m = len(indices)
    totals = [torch.zeros((m, *x.shape[1:]), device=x.device) for x in inputs]
    target = torch.as_tensor(indices, device=inputs[0].device)
    extra = COARSE_STEPS if estimate is not None else 0
    work = (n_steps + extra) * m
    coarse: list[tuple[torch.Tensor, ...]] = []  # per label, per encoder: its gradients at the coarse points
    if estimate is not None:
        coarse = _coarse_grads(model, inputs, bases, batches, n_words, target, alphas(COARSE_STEPS), precision)
        report_progress(COARSE_STEPS * m / work)
        rest = torch.as_tensor(_rest_coefficients(points, weights, alphas(COARSE_STEPS)), dtype=inputs[0].dtype)
        done = [0] * m

        def current() -> Estimate:
            return estimate([torch.stack([t[r] + torch.einsum("c,c...->...", rest[done[r]].to(t.device), coarse[r][k])
                                          for r in range(m)]) for k, t in enumerate(totals)], list(done))
        yield current()
    for start in range(0, n_steps, internal_batch_size):
        stop = min(n_steps, start + internal_batch_size)
        w = torch.as_tensor(weights[start:stop], dtype=inputs[0].dtype, device=inputs[0].device)
        for r, grads in enumerate(_step_grads(model, inputs, bases, batches, n_words, target, points[start:stop],
                                              precision)):
            for k, g in enumerate(grads):
                totals[k][r] += (g * w[:, None, None]).sum(0)
            report_progress((extra * m + start * m + (stop - start) * (r + 1)) / work)
            if estimate is not None and (stop < n_steps or r < m - 1):
                done[r] = stop
                yield current()
    return totals


def ig_stream(model: ExplainModel, text: str, indices: list[int], n_steps: int = 50, internal_batch_size: int = 16,
              precision: str = "fp32", estimates: bool = False):
    """Integrated Gradients of each requested label's probability, per word of the original text:
    a generator returning ``(scores, diagnostics)``; with ``estimates`` it yields an
    :class:`~emoscope.explain.registry.Estimate` after the coarse pass and after each label of
    each step batch (see :func:`_integrate`).

    All encoders' embeddings move from baseline to input together; each step batch needs one
    forward pass for all labels, then one backward pass per label over the kept graph.
    ``precision``: the step passes run under that autocast (``bf16``: the encoders' linear layers
    in bf16, attention kernels, word pooling and the meta-learner in fp32; inputs, gradients and
    sums stay fp32). The endpoints of the completeness check are always fp32, so the reported
    delta includes any bf16 error.
    """
    precision = resolve_precision(model.device, precision)
    if n_steps < 2:
        raise InputError(f"ig needs n_steps >= 2, got {n_steps}")
    if internal_batch_size < 1:
        raise InputError(f"ig needs internal_batch_size >= 1, got {internal_batch_size}")
    words, read, model_words = model.words(text)
    batches = model.batches(model_words)
    n_words = len(model_words)
    inputs = model.input_embeddings(batches)
    bases = model.baselines(batches)
    target = torch.as_tensor(indices, device=inputs[0].device)
    with torch.no_grad():  # not inference_mode: the model's gradient-ready meta-learner copy may be made here
        p_input = model.forward_embeds(inputs, batches, n_words)[0, target].cpu().numpy()
        p_base = model.forward_embeds(bases, batches, n_words)[0, target].cpu().numpy()

    def attribute(totals: list[torch.Tensor]) -> tuple[np.ndarray, dict[str, Any]]:
        token_scores = []
        scores = np.zeros((len(indices), len(words)))
        for k, (x, b, batch) in enumerate(zip(inputs, bases, batches)):
            attr = ((x[0] - b[0])[None] * totals[k]).sum(-1).detach().cpu()  # [m, T]
            token_scores.append(attr)
            scores += (attr @ token_word_matrix(batch["word_index"][0].tolist(), read, len(words))).numpy()
        total_attr = sum(t.sum(-1) for t in token_scores).numpy()
        delta = total_attr - (p_input - p_base)
        return scores, {"convergence_delta": {model.labels[j]: float(d) for j, d in zip(indices, delta)},
                        "baseline_probability": {model.labels[j]: float(p) for j, p in zip(indices, p_base)},
                        "attribution_sum": {model.labels[j]: float(s) for j, s in zip(indices, total_attr)},
                        "words_read": len(read), "words": len(words), "precision": precision}

    def estimate(totals: list[torch.Tensor], done: list[int]) -> Estimate:
        def compute() -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
            scores, diagnostics = attribute(totals)
            diagnostics |= {"coarse_steps": COARSE_STEPS, "steps_done": {model.labels[j]: d for j, d in zip(indices, done)}}
            return scores, diagnostics, {}
        return Estimate(min(done), n_steps, "steps", compute)

    totals = yield from _integrate(model, inputs, bases, batches, n_words, indices, n_steps, internal_batch_size,
                                   precision, estimate if estimates else None)
    return attribute(totals)


def ig_word_attributions(model: ExplainModel, text: str, indices: list[int], n_steps: int = 50,
                         internal_batch_size: int = 16, precision: str = "fp32") -> tuple[np.ndarray, dict[str, Any]]:
    """Integrated Gradients of each requested label's probability, per word of the original text
    (:func:`ig_stream` run to its end, without estimates)."""
    stream = ig_stream(model, text, indices, n_steps, internal_batch_size, precision)
    while True:
        try:
            next(stream)
        except StopIteration as end:
            return end.value


@register_method("ig", *PARAMS, title="Integrated Gradients")
def ig_method(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    scores, diagnostics = yield from ig_stream(model, text, indices, int(params["n_steps"]),
                                               int(params["internal_batch_size"]), str(params["precision"]),
                                               estimates_wanted())
    return scores, diagnostics, {}
