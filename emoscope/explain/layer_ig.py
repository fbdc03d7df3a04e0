"""Integrated Gradients at the layer the model's head reads (method ``layer-ig``): fast, and about
contextual word vectors, not input tokens.

Exact IG (``ig``) moves every encoder's input embeddings and runs every encoder at every step.
Here the encoders run once, over the text and over its baseline, and only the head is
differentiated per step: for a stack, the meta-learner, at its input (each word's vector from
every encoder, stacked: ``EmotionModel.word_layer``); for a single encoder, its pooled head, at
the encoder's last hidden states (one vector per token, summed onto the words). What is
attributed is therefore each word's *contextual vector*: a word's score also carries what its
context wrote into that vector, and the encoders themselves are not explained.

Baseline: the same layer's vectors for the text with every word token replaced by the padding
token (special and prefix tokens kept), i.e. exact IG's baseline passed through the encoders.
Zero vectors would be the textbook choice but are degenerate here: the meta-learner starts with
a LayerNorm per encoder, which is scale invariant, so along the path ``a * x`` it is constant
except in a sliver near 0 that no quadrature step sees (completeness fails). The blank text keeps
the path inside what the head was trained on, and makes the reference the one exact IG uses.
Anything else the head reads (the base classifiers' logits of a stack that stacks them) is held
at the text's own values, so its share of the prediction is not attributed; the diagnostics say so.

Steps: Captum's Gauss-Legendre points and weights (``n_steps``); all steps of all texts in one
forward pass of the head, then one backward pass per label. The stack computes the head along the
path from two projections per word (``models.meta_path``). ``layer_attributions`` is the batched
form over many texts that the dataset view uses. Equals Captum's ``LayerIntegratedGradients`` on
the same layer and baseline (tested); the completeness gap is reported per label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emoscope.explain.model import ExplainModel
from emoscope.explain.params import ParamSpec, Widget
from emoscope.explain.registry import register_method, report_progress
from emoscope.models.base import WordLayer
from emoscope.words import token_word_matrix

PARAMS = (
    ParamSpec("n_steps", int, 16, "integration steps from the blank text's vectors to the text's (the encoders run "
              "once whatever this is; more: a smaller completeness gap)", min=2, max=256,
              widget=Widget("Steps", presets=(4, 8, 16, 32, 64))),
)

BASELINE = ("the same layer's vectors for the text with every word token replaced by the padding token (special "
            "and prefix tokens kept): exact IG's baseline, passed through the encoders")


@dataclass
class LayerPass:
    """One batched encoder pass: the head's input for ``B`` texts and for their blank baselines."""

    layer: WordLayer
    baseline: torch.Tensor  # [B, P, D]


@dataclass
class LayerScores:
    """Layer IG of ``B`` texts: per text and requested label a score per position, the requested
    labels' probabilities at the text and at the baseline, and every label's probability (the
    model's prediction: the layer is the real forward pass)."""

    scores: np.ndarray  # [B, m, P]
    p_input: np.ndarray  # [B, m]
    p_base: np.ndarray  # [B, m]
    probabilities: np.ndarray  # [B, L]
    positions: np.ndarray  # [B, P] model word of each position (-1: none)

    @property
    def delta(self) -> np.ndarray:
        """Completeness gap ``[B, m]``: attributions' sum minus the probability change they explain."""
        return self.scores.sum(-1) - (self.p_input - self.p_base)


@torch.no_grad()
def layer_pass(model: ExplainModel, word_lists: Sequence[Sequence[str]]) -> LayerPass:
    """Run the encoders once over the texts (their model words) and their blank baselines, batched."""
    emotion = model.model
    batches, n_words = emotion.encode_words(word_lists)
    batches = emotion.to_device(batches)
    embeds = [torch.cat([x, b]) for x, b in zip(model.input_embeddings(batches), model.baselines(batches))]
    doubled = [{k: torch.cat([v, v]) for k, v in batch.items()} for batch in batches]
    both = emotion.word_layer(doubled, torch.cat([n_words, n_words]).to(model.device), inputs_embeds=embeds)
    half = len(word_lists)
    layer = WordLayer(both.vectors[:half].float(), both.positions[:half], n_words.to(model.device),
                      {k: v[:half] for k, v in both.context.items()}, both.name)
    return LayerPass(layer, both.vectors[half:].float())


def _steps(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    from captum.attr._utils.approximation_methods import approximation_parameters  # third-party, loaded only for IG

    step_sizes, alphas = approximation_parameters("gausslegendre")
    return np.asarray(step_sizes(n_steps), dtype=np.float32), np.asarray(alphas(n_steps), dtype=np.float32)


def layer_attributions(model: ExplainModel, passed: LayerPass, indices: Sequence[int], n_steps: int,
                       progress: Any = None) -> LayerScores:
    """Layer IG of every text in ``passed`` for the labels ``indices``: one forward pass of the
    head over all texts' steps, one backward pass per label. ``progress(fraction)`` per label."""
    emotion = model.model
    layer, baseline = passed.layer, passed.baseline
    weights, alphas = _steps(n_steps)
    texts, width = layer.vectors.shape[:2]
    target = torch.as_tensor(list(indices), device=layer.vectors.device)
    s = torch.as_tensor(alphas, device=layer.vectors.device)[None, :, None].expand(texts, n_steps, width)
    s = s.contiguous().requires_grad_(True)
    w = torch.as_tensor(weights, device=layer.vectors.device)[None, :, None]
    scores = torch.zeros((texts, len(target), width), device=layer.vectors.device)
    with torch.enable_grad():
        probs = torch.sigmoid(emotion.word_path_logits(layer, baseline, s).float())[..., target]  # [B, n, m]
        for r in range(len(target)):
            grad, = torch.autograd.grad(probs[..., r].sum(), s, retain_graph=r < len(target) - 1)
            scores[:, r] = (grad * w).sum(1)
            if progress is not None:
                progress((r + 1) / len(target))
    with torch.no_grad():
        p_all = torch.sigmoid(emotion.from_word_layer(layer).float())
        p_base = torch.sigmoid(emotion.from_word_layer(layer, baseline).float())[:, target]
    return LayerScores(scores.cpu().numpy(), p_all[:, target].cpu().numpy(), p_base.cpu().numpy(),
                       p_all.cpu().numpy(), layer.positions.cpu().numpy())


def word_scores(positions: np.ndarray, scores: np.ndarray, read: Sequence[int], n_words: int) -> np.ndarray:
    """One text's position scores ``[m, P]`` summed onto the words of the text as typed ``[m, n_words]``."""
    return scores @ token_word_matrix(positions.tolist(), read, n_words).numpy()


def describe(layer: WordLayer) -> dict[str, Any]:
    """What the attribution covers, in words, for the diagnostics and the JSON."""
    out = {"attributes_to": f"{layer.name}: contextual word vectors, not input tokens; the encoders ran once and "
                            "are not explained themselves",
           "baseline": BASELINE}
    if "base" in layer.context:
        out["held_fixed"] = ("the base classifiers' logits the meta-learner also reads are held at the text's values: "
                             "their share of the prediction is not attributed to words")
    return out


def layer_ig_word_attributions(model: ExplainModel, text: str, indices: list[int],
                               n_steps: int = 16) -> tuple[np.ndarray, dict[str, Any]]:
    """Layer IG of each requested label's probability, per word of the original text."""
    words, read, model_words = model.words(text)
    passed = layer_pass(model, [model_words])
    report_progress(0.3)
    result = layer_attributions(model, passed, indices, n_steps, lambda f: report_progress(0.3 + 0.7 * f))
    scores = word_scores(result.positions[0], result.scores[0], read, len(words))
    on_words = np.abs(scores).sum()
    total = np.abs(result.scores[0]).sum()
    labels = [model.labels[j] for j in indices]
    diagnostics = {**describe(passed.layer),
                   "convergence_delta": dict(zip(labels, map(float, result.delta[0]))),
                   "baseline_probability": dict(zip(labels, map(float, result.p_base[0]))),
                   "attribution_sum": dict(zip(labels, map(float, result.scores[0].sum(-1)))),
                   "share_off_words": float(0.0 if total == 0 else 1.0 - on_words / total),
                   "words_read": len(read), "words": len(words), "precision": "fp32"}
    return scores, diagnostics


@register_method("layer-ig", *PARAMS, title="Layer IG (fast, word vectors)")
def layer_ig_method(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    scores, diagnostics = layer_ig_word_attributions(model, text, indices, int(params["n_steps"]))
    return scores, diagnostics, {}
