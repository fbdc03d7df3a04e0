"""Integrated Gradients (Sundararajan et al., 2017) through the whole model at once.

Every encoder's word embeddings move together from a baseline (the padding embedding at every
word token; special and prefix tokens keep their own) with Captum's Gauss-Legendre steps and
weights; each step batch needs one forward pass for all requested labels, then one backward
pass per label over the kept graph. Attributions = (x - baseline) * the weighted gradients,
summed over the hidden size, over each word's sub-words and over the encoders. The result
equals Captum's ``IntegratedGradients`` label by label (tested); the completeness gap is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emoscope.errors import InputError
from emoscope.explain.model import ExplainModel
from emoscope.explain.params import ParamSpec, Widget, precision_spec
from emoscope.explain.registry import register_method, report_progress
from emoscope.models import autocast_context, resolve_precision
from emoscope.words import token_word_matrix

PARAMS = (
    ParamSpec("n_steps", int, 50, "integration steps from the baseline to the text (more: a smaller completeness gap)",
              min=2, widget=Widget("Steps", value=32, presets=(8, 16, 32, 50, 100))),
    ParamSpec("internal_batch_size", int, 16, "steps per forward pass (bounds the memory)", min=1, widget=None),
    precision_spec(),
)


def _integrate(model: ExplainModel, inputs: list[torch.Tensor], bases: list[torch.Tensor], batches: list[dict],
               n_words: int, indices: list[int], n_steps: int, internal_batch_size: int,
               precision: str) -> list[torch.Tensor]:
    """Per encoder, the step-weighted sum of the gradients of each label ``[m, T_k, H_k]``."""
    from captum.attr._utils.approximation_methods import approximation_parameters  # third-party, loaded only for IG

    step_sizes, alphas = approximation_parameters("gausslegendre")
    weights, points = step_sizes(n_steps), alphas(n_steps)
    m = len(indices)
    totals = [torch.zeros((m, *x.shape[1:]), device=x.device) for x in inputs]
    target = torch.as_tensor(indices, device=inputs[0].device)
    for start in range(0, n_steps, internal_batch_size):
        a = torch.as_tensor(points[start:start + internal_batch_size], dtype=inputs[0].dtype, device=inputs[0].device)
        w = torch.as_tensor(weights[start:start + internal_batch_size], dtype=inputs[0].dtype, device=inputs[0].device)
        scaled = [(b + a[:, None, None] * (x - b)).requires_grad_(True) for x, b in zip(inputs, bases)]
        with autocast_context(model.device, precision):
            probs = model.forward_embeds(scaled, batches, n_words)[:, target]  # [c, m]
        for r in range(m):
            grads = torch.autograd.grad(probs[:, r].sum(), scaled, retain_graph=r < m - 1)
            for k, g in enumerate(grads):
                totals[k][r] += (g * w[:, None, None]).sum(0)
            report_progress((start * m + len(a) * (r + 1)) / (n_steps * m))
    return totals


def ig_word_attributions(model: ExplainModel, text: str, indices: list[int], n_steps: int = 50,
                         internal_batch_size: int = 16, precision: str = "fp32") -> tuple[np.ndarray, dict[str, Any]]:
    """Integrated Gradients of each requested label's probability, per word of the original text.

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
    totals = _integrate(model, inputs, bases, batches, n_words, indices, n_steps, internal_batch_size, precision)
    token_scores = []
    scores = np.zeros((len(indices), len(words)))
    for k, (x, b, batch) in enumerate(zip(inputs, bases, batches)):
        attr = ((x[0] - b[0])[None] * totals[k]).sum(-1).detach().cpu()  # [m, T]
        token_scores.append(attr)
        scores += (attr @ token_word_matrix(batch["word_index"][0].tolist(), read, len(words))).numpy()
    target = torch.as_tensor(indices, device=inputs[0].device)
    with torch.inference_mode():
        p_input = model.forward_embeds(inputs, batches, n_words)[0, target].cpu().numpy()
        p_base = model.forward_embeds(bases, batches, n_words)[0, target].cpu().numpy()
    total_attr = sum(t.sum(-1) for t in token_scores).numpy()
    delta = total_attr - (p_input - p_base)
    diagnostics = {"convergence_delta": {model.labels[j]: float(d) for j, d in zip(indices, delta)},
                   "baseline_probability": {model.labels[j]: float(p) for j, p in zip(indices, p_base)},
                   "attribution_sum": {model.labels[j]: float(s) for j, s in zip(indices, total_attr)},
                   "words_read": len(read), "words": len(words), "precision": precision}
    return scores, diagnostics


@register_method("ig", *PARAMS, title="Integrated Gradients")
def ig_method(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    scores, diagnostics = ig_word_attributions(model, text, indices, int(params["n_steps"]),
                                               int(params["internal_batch_size"]), str(params["precision"]))
    return scores, diagnostics, {}
