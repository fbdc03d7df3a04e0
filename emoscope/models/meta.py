"""The stack's meta-learner: a Bi-LSTM over the stacked word vectors, and its weights file.

``MetaLearner``: per-encoder LayerNorm → concat per word → dropout → Bi-LSTM → pooling over words
(attention | max | mean, padding masked) → dense → one logit per label, optionally adding the
base classifiers' logits (classic stacking of predictions). ``MetaEnsemble``: ``meta.ensemble``
such meta-learners, trained alone with different seeds, whose logits it averages (a seed
ensemble). ``meta.safetensors`` holds its weights
and, in its metadata, what it was trained on: the label list, each encoder's input size and
weights fingerprint, and which encoders' classifier heads it reads; :func:`read_meta` checks them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from emoscope.config import MetaConfig
from emoscope.errors import BundleError


class MetaLearner(nn.Module):
    """Per-encoder LayerNorm → Bi-LSTM over words → pooling over words → dense → one logit per label.

    With ``n_base > 0`` it also reads the logits of the ``n_base`` fine-tuned base classifiers
    (stage 1's heads, classic stacking of predictions): the output is their per-label weighted sum
    (weights start at ``1 / n_base``) plus the Bi-LSTM's correction, whose last layer starts at
    zero, so training starts from the base classifiers' ensemble and learns what the stacked
    word vectors add.
    """

    def __init__(self, input_sizes: Sequence[int], n_labels: int, hidden_size: int = 128, layers: int = 1,
                 dropout: float = 0.3, input_dropout: float = 0.1, pooling: str = "attention", dense_size: int = 128,
                 n_base: int = 0):
        super().__init__()
        self.n_base = int(n_base)
        self.input_sizes = [int(x) for x in input_sizes]
        self.pooling = pooling
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in self.input_sizes)
        self.input_dropout = nn.Dropout(input_dropout)
        self.lstm = nn.LSTM(sum(self.input_sizes), hidden_size, num_layers=layers, batch_first=True,
                            bidirectional=True, dropout=dropout if layers > 1 else 0.0)
        self.attention = nn.Linear(2 * hidden_size, 1) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        if dense_size:
            self.dense: nn.Module = nn.Sequential(nn.Linear(2 * hidden_size, dense_size), nn.ReLU(), nn.Dropout(dropout))
            self.out = nn.Linear(dense_size, n_labels)
        else:
            self.dense = nn.Identity()
            self.out = nn.Linear(2 * hidden_size, n_labels)
        if self.n_base:
            self.base_weight = nn.Parameter(torch.full((self.n_base, n_labels), 1.0 / self.n_base))
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    @property
    def n_labels(self) -> int:
        return self.out.out_features

    def forward(self, x: torch.Tensor, n_words: torch.Tensor, return_features: bool = False,
                base: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x [B, W, sum(input_sizes)]``, ``n_words [B]`` (and ``base [B, n_base * L]``, the base
        classifiers' logits, when ``n_base > 0``) → logits ``[B, L]`` (and the pooled vectors)."""
        if self.n_base and (base is None or base.shape[-1] != self.n_base * self.n_labels):
            got = "none" if base is None else f"{base.shape[-1]} values per text"
            raise ValueError(f"this meta-learner reads the logits of {self.n_base} base classifiers "
                             f"({self.n_base * self.n_labels} values per text); got {got}")
        parts = torch.split(x.float(), self.input_sizes, dim=-1)
        x = self.input_dropout(torch.cat([norm(p) for norm, p in zip(self.norms, parts)], dim=-1))
        width = x.size(1)
        lengths = n_words.clamp(min=1, max=width).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=width)
        mask = torch.arange(width, device=x.device)[None, :] < lengths.to(x.device)[:, None]
        if self.pooling == "max":
            pooled = out.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
        elif self.pooling == "mean":
            pooled = (out * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:
            scores = self.attention(out).squeeze(-1).masked_fill(~mask, float("-inf"))
            pooled = (torch.softmax(scores, dim=1).unsqueeze(-1) * out).sum(1)
        logits = self.out(self.dense(self.dropout(pooled)))
        if self.n_base:
            prior = base.float().view(-1, self.n_base, self.n_labels)
            logits = logits + (prior * self.base_weight).sum(1)
        return (logits, pooled) if return_features else logits


class MetaEnsemble(nn.Module):
    """``k`` meta-learners over the same inputs, trained alone with different seeds; its logits are
    the mean of theirs. The mean of logits (not of probabilities) keeps the ensemble a sum of its
    members, so every attribution of a member adds up (Integrated Gradients' completeness holds
    for the ensemble as for one member). Its weights are the members' under ``members.<i>.``."""

    def __init__(self, members: Sequence[MetaLearner]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("a meta-learner ensemble needs at least two members")
        first = members[0]
        if any((m.input_sizes, m.n_labels, m.n_base) != (first.input_sizes, first.n_labels, first.n_base)
               for m in members):
            raise ValueError("the members of a meta-learner ensemble must read the same inputs and labels")
        self.members = nn.ModuleList(members)

    @property
    def n_labels(self) -> int:
        return self.members[0].n_labels

    @property
    def n_base(self) -> int:
        return self.members[0].n_base

    @property
    def input_sizes(self) -> list[int]:
        return self.members[0].input_sizes

    def forward(self, x: torch.Tensor, n_words: torch.Tensor, return_features: bool = False,
                base: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`MetaLearner.forward`; the pooled vectors are the members', concatenated."""
        outs = [m(x, n_words, return_features=True, base=base) for m in self.members]
        logits = torch.stack([o[0] for o in outs]).mean(0)
        return (logits, torch.cat([o[1] for o in outs], dim=-1)) if return_features else logits


def gradient_ready(meta: MetaLearner | MetaEnsemble) -> MetaLearner | MetaEnsemble:
    """A copy of an inference meta-learner that computes the same function and can be
    differentiated through on a GPU. cuDNN's LSTM backward refuses a module in eval mode
    ("cudnn RNN backward can only be called in training mode"), so the copy's LSTM is in
    training mode with its between-layer dropout set to 0 (the only thing training mode changes
    in ``nn.LSTM``); everything else stays in eval mode. A copy, so that predictions running in
    other threads on the shared model are never touched."""
    if isinstance(meta, MetaEnsemble):
        return MetaEnsemble([gradient_ready(m) for m in meta.members])
    ready = copy.deepcopy(meta).eval()
    for p in ready.parameters():
        p.requires_grad_(False)
    ready.lstm.dropout = 0.0
    ready.lstm.train()
    return ready


def build_meta(input_sizes: Sequence[int], n_labels: int, cfg: MetaConfig, n_base: int = 0,
               ensemble: int | None = None) -> MetaLearner | MetaEnsemble:
    """The meta-learner ``cfg`` describes: one, or an ensemble of ``cfg.ensemble`` (``ensemble``
    overrides it; 1 while training, which fits each member alone)."""
    k = cfg.ensemble if ensemble is None else ensemble
    if k > 1:
        return MetaEnsemble([build_meta(input_sizes, n_labels, cfg, n_base, ensemble=1) for _ in range(k)])
    return MetaLearner(input_sizes, n_labels, hidden_size=cfg.hidden_size, layers=cfg.layers, dropout=cfg.dropout,
                       input_dropout=cfg.input_dropout, pooling=cfg.pooling, dense_size=cfg.dense_size,
                       n_base=n_base)


def save_meta(meta: MetaLearner | MetaEnsemble, path: Path, labels: Sequence[str], fingerprints: Sequence[str],
              base_encoders: Sequence[int] = (), text_bases: Sequence[str] = ()) -> None:
    """``base_encoders``: indices of the encoders whose classifier logits the meta-learner reads;
    ``text_bases``: names of the ``[[bases]]`` whose logits it reads after theirs (recorded only
    when there are any, so a stack without them writes the file it always wrote)."""
    metadata = {"labels": json.dumps(list(labels), ensure_ascii=False),
                "encoder_fingerprints": json.dumps(list(fingerprints)),
                "input_sizes": json.dumps(meta.input_sizes),
                "base_encoders": json.dumps([int(i) for i in base_encoders])}
    if text_bases:
        metadata["text_bases"] = json.dumps(list(text_bases), ensure_ascii=False)
    save_file({k: v.detach().cpu().contiguous() for k, v in meta.state_dict().items()}, str(path), metadata=metadata)


@dataclass
class MetaFile:
    """What ``meta.safetensors`` holds: the weights and the facts recorded beside them."""

    state: dict[str, torch.Tensor]
    labels: list[str]
    fingerprints: list[str]
    input_sizes: list[int]
    base_encoders: list[int]
    text_bases: list[str] = dataclasses.field(default_factory=list)


def read_meta(path: Path) -> MetaFile:
    """Read a meta-learner file; ``BundleError`` when it cannot be read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise BundleError(f"cannot read the meta-learner {path}: {exc}") from exc
    return MetaFile(state, json.loads(metadata.get("labels", "null")) or [],
                    json.loads(metadata.get("encoder_fingerprints", "[]")),
                    json.loads(metadata.get("input_sizes", "[]")), json.loads(metadata.get("base_encoders", "[]")),
                    json.loads(metadata.get("text_bases", "[]")))


def meta_config(settings: dict) -> MetaConfig:
    """The ``MetaConfig`` of a manifest's ``model.meta`` (which also records ``input_sizes``)."""
    known = {f.name for f in dataclasses.fields(MetaConfig)}
    return MetaConfig(**{k: v for k, v in settings.items() if k in known})
