"""Integrated Gradients at the layer the model's head reads (method ``layer-ig``): fast, and about
contextual word vectors, not input tokens.

Exact IG (``ig``) moves every encoder's input embeddings and runs every encoder at every step.
Here the encoders run once, over the text and over its baseline, and only the head is
differentiated per step: for a stack, the meta-learner, at its input (each word's vector from
every encoder, stacked: ``EmotionModel.word_layer``); for a single encoder, its pooled head, at
the encoder's last hidden states (one vector per token, summed onto the words). What is
attributed is therefore each word's *contextual vector*: a word's score also carries what its
context wrote into that vector, and the encoders themselves are not explained.

Baseline: the same layer's vectors for a blank text, every word replaced by the padding token
(special and prefix tokens kept), as exact IG's baseline does in the input embeddings. For a stack,
whose layer holds one vector per word, the blank has one padding token per word, so it depends on
nothing but the word count: computed once per count and model (:func:`blank_words`), shared by
every text of that length (a dataset's words are scored against the same reference), and nearly
free. For a single encoder, whose layer holds one vector per token, it is the text's own tokens
with each word token padded (one more encoder pass). Zero vectors would be the textbook choice but
are degenerate here: the meta-learner starts with a LayerNorm per encoder, which is scale
invariant, so along the path ``a * x`` it is constant except in a sliver near 0 that no quadrature
step sees (completeness fails). The blank keeps the path inside what the head was trained on.
Anything else the head reads (the base classifiers' logits of a stack that stacks them) is held
at the text's own values, so its share of the prediction is not attributed; the diagnostics say so.

Steps: Captum's Gauss-Legendre points and weights (``n_steps``); all steps of all texts in one
forward pass of the head, then one backward pass per label. The stack computes the head along the
path from two projections per word (``models.meta_path``). ``layer_attributions`` is the batched
form over many texts that the dataset view uses. Equals Captum's ``LayerIntegratedGradients`` on
the same layer and baseline (tested); the completeness gap is reported per label.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emoscope.explain.model import ExplainModel
from emoscope.explain.params import ParamSpec, Widget
from emoscope.explain.registry import MODEL_PROBABILITIES, register_method, report_progress
from emoscope.models.base import WordLayer
from emoscope.words import token_word_matrix

PARAMS = (
    ParamSpec("n_steps", int, 16, "integration steps from the blank text's vectors to the text's (the encoders run "
              "once whatever this is; more: a smaller completeness gap)", min=2, max=256,
              widget=Widget("Steps", presets=(4, 8, 16, 32, 64))),
)

BASELINE = ("the same layer's vectors for a blank text: every word replaced by the padding token (a stack: one per "
            "word; a single encoder: at each of the text's word tokens), special and prefix tokens kept")


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
    """Run the encoders once over the texts (their model words), batched, and give each its blank
    baseline: for a layer of words, the blank text of as many words (:func:`blank_words`, computed
    once per word count); for a layer of tokens, the text's own tokens with each word token
    replaced by padding (one more encoder pass)."""
    emotion = model.model
    batches, n_words = emotion.encode_words(word_lists)
    batches = emotion.to_device(batches)
    n_words = n_words.to(model.device)
    layer = emotion.word_layer(batches, n_words, inputs_embeds=model.input_embeddings(batches))
    layer.vectors = layer.vectors.float()
    if layer.per_word:
        blanks = blank_words(model, n_words.tolist())
        baseline = torch.zeros_like(layer.vectors)
        for row, n in enumerate(n_words.tolist()):
            baseline[row, :n] = blanks[n]
        start = 0
        for width in layer.segments:  # a word an encoder cut (zero vector) keeps zero: it read nothing there
            part = slice(start, start + width)
            start += width
            cut = (layer.vectors[..., part] == 0).all(-1, keepdim=True)
            baseline[..., part] = baseline[..., part].masked_fill(cut, 0.0)
    else:
        baseline = emotion.word_layer(batches, n_words, inputs_embeds=model.baselines(batches)).vectors.float()
    return LayerPass(layer, baseline)


_BLANKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per EmotionModel: {word count: vectors}
_BLANKS_LOCK = threading.Lock()


def blank_words(model: ExplainModel, counts: Sequence[int]) -> dict[int, torch.Tensor]:
    """The head's input ``[n, D]`` for a blank text of ``n`` words, for each ``n`` in ``counts``:
    each encoder reads its special and prefix tokens as for any text and one padding token per word
    (from input embeddings, as exact IG feeds its baseline). Depends on nothing but ``n``: computed
    once per model and count, the missing counts in one batch."""
    emotion = model.model
    with _BLANKS_LOCK:
        known = _BLANKS.setdefault(emotion, {})
        missing = sorted(set(counts) - set(known))
    if missing:
        batches = []
        for we in emotion.word_encoders:
            (ids, index), = we.encode([["x"]])
            first, last = index.index(0), len(index) - 1 - index[::-1].index(0)  # the one word's tokens
            before, after = ids[:first], ids[last + 1:]
            rows = []
            for n in missing:
                pads = max(0, min(n, we.max_length - len(before) - len(after)))  # the text's own cut, if any
                rows.append((before + [we.pad_id] * pads + after,
                             [-1] * len(before) + list(range(pads)) + [-1] * len(after)))
            batches.append(we.pad(rows))
        batches = emotion.to_device(batches)
        with torch.no_grad():
            layer = emotion.word_layer(batches, torch.as_tensor(missing, device=model.device),
                                       inputs_embeds=model.input_embeddings(batches))
        with _BLANKS_LOCK:
            for row, n in enumerate(missing):
                known[n] = layer.vectors[row, :n].float()
    with _BLANKS_LOCK:
        return {n: known[n] for n in counts}


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
    scores, diagnostics, _ = _attribute(model, text, indices, n_steps)
    return scores, diagnostics


def _attribute(model: ExplainModel, text: str, indices: list[int],
               n_steps: int) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """The word scores, the diagnostics, and every label's probability from the same pass."""
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
    return scores, diagnostics, result.probabilities[0]


@register_method("layer-ig", *PARAMS, title="Layer IG (fast, word vectors)")
def layer_ig_method(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    scores, diagnostics, probabilities = _attribute(model, text, indices, int(params["n_steps"]))
    return scores, diagnostics, {MODEL_PROBABILITIES: probabilities}  # its pass is the prediction: no second one
