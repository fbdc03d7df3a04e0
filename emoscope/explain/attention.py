"""Attention: what each word receives, per base encoder, mapped from sub-words to words.

One layer and head, heads averaged, or attention rollout (Abnar & Zuidema, 2020). Eager-attention
copies of the encoders are made only when this method is used, so the shared model's faster
attention kernel is never switched. The scores are not label-specific (said in the diagnostics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emoscope.errors import InputError
from emoscope.explain.model import ExplainModel
from emoscope.explain.params import ParamSpec, Widget
from emoscope.explain.registry import register_method
from emoscope.words import token_word_matrix

ENCODER_HELP = ("fine-tuned: the encoders trained on emotions (their attention was the more faithful on the dev "
                "sample); all: averaged over every encoder")


def _encoder_choices(model: ExplainModel) -> list[str]:
    return ["fine-tuned", "all", *model.names]


def _offered_encoders(model: ExplainModel) -> list[str]:
    """What the page offers: one encoder needs no choice."""
    return _encoder_choices(model) if len(model.names) > 1 else ["all"]


def _last_layer(model: ExplainModel) -> int | None:
    known = [n for n in model.layers if n is not None]
    return max(known) - 1 if known else None


NOT_ROLLOUT = {"rollout": False}
PARAMS = (
    ParamSpec("layer", int, -1, "the layer whose attention is read (-1: the last)", min=-1, max=_last_layer,
              widget=Widget("Layer (-1 = last)", only_if=NOT_ROLLOUT)),
    ParamSpec("head", int, "mean", "the attention head read, or 'mean' for the average over heads", min=0,
              words=("mean",), widget=Widget("Head (number, or 'mean')", only_if=NOT_ROLLOUT)),
    ParamSpec("rollout", bool, False, "attention rollout over all layers (heads averaged) instead of one layer",
              widget=Widget("Attention rollout (all layers)")),
    ParamSpec("encoder", str, "fine-tuned", ENCODER_HELP, choices=_encoder_choices,
              widget=Widget("Encoder", offered=_offered_encoders)),
)


def _used_encoders(model: ExplainModel, choice: str) -> list[int]:
    """``fine-tuned`` (the default: the encoders fine-tuned on emotions, or all when none was; on
    the dev sample their scores were more faithful than the average over all encoders, see
    docs/BENCHMARKS.md), ``all``, or one encoder's name."""
    if choice not in ("all", "fine-tuned") and choice not in model.names:
        raise InputError(f"unknown encoder '{choice}'; this model has {', '.join(model.names)} "
                         "(or 'fine-tuned', 'all')")
    if choice == "fine-tuned":
        return [i for i, ft in enumerate(model.fine_tuned) if ft] or list(range(len(model.names)))
    return [i for i, n in enumerate(model.names) if choice in ("all", n)]


def _chosen_map(att: torch.Tensor, params: dict[str, Any], name: str) -> torch.Tensor:
    """The token x token attention asked for, from ``att`` ``[layers, heads, T, T]``."""
    n_layers, n_heads = att.shape[:2]
    layer, head = params["layer"], params["head"]
    if params["rollout"]:
        a = att.mean(1) + torch.eye(att.shape[-1])
        a = a / a.sum(-1, keepdim=True)
        rolled = a[0]
        for i in range(1, n_layers):
            rolled = a[i] @ rolled
        return rolled
    if not -n_layers <= int(layer) < n_layers:
        raise InputError(f"{name} has {n_layers} layers; layer must be in 0..{n_layers - 1} (or -1 for the last)")
    if head == "mean":
        return att[int(layer)].mean(0)
    if not 0 <= int(head) < n_heads:
        raise InputError(f"{name} has {n_heads} heads; head must be in 0..{n_heads - 1} or 'mean'")
    return att[int(layer), int(head)]


def _encoder_scores(name: str, encoder: Any, batch: dict[str, torch.Tensor], read: list[int], n_words: int,
                    params: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """One encoder's normalised attention per word, and its word x word map."""
    with torch.inference_mode():
        out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
    att = torch.stack([a[0].float().cpu() for a in out.attentions])  # [layers, heads, T, T]
    n_layers, n_heads = att.shape[:2]
    chosen = _chosen_map(att, params, name)
    w = token_word_matrix(batch["word_index"][0].tolist(), read, n_words)  # [T, n]
    real = batch["attention_mask"][0].cpu().float()
    # attention each word receives, averaged over the real query tokens
    received = (real @ chosen) / real.sum()
    score = received @ w
    total = score.sum()
    # word x word map for the chosen layer/head: rows averaged over a word's tokens, columns summed
    rows = w / w.sum(0, keepdim=True).clamp(min=1)
    matrix = {"layers": n_layers, "heads": n_heads, "word_matrix": (rows.T @ chosen @ w).tolist()}
    return (score / total if total > 0 else score), matrix


@register_method("attention", *PARAMS, title="attention", page_order=("encoder", "rollout", "layer", "head"))
def attention_method(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    used = _used_encoders(model, str(params["encoder"]))
    words, read, model_words = model.words(text)
    batches = model.batches(model_words)
    per_encoder, matrices = [], {}
    for name, encoder, batch in [(model.names[i], model.eager_encoder(i), batches[i]) for i in used]:
        score, matrices[name] = _encoder_scores(name, encoder, batch, read, len(words), params)
        per_encoder.append(score)
    combined = torch.stack(per_encoder).mean(0).numpy()
    scores = np.tile(combined, (len(indices), 1))
    diagnostics = {"label_specific": False, "encoders": model.names,
                   "per_encoder": {model.names[i]: s.tolist() for i, s in zip(used, per_encoder)}}
    return scores, diagnostics, {"attention": matrices}
