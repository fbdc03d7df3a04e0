"""The one model interface: words → inputs → forward (from token ids or input embeddings) → probabilities.

Both bundle kinds implement :class:`EmotionModel`: the single-encoder classifier and the stacked
ensemble. ``Predictor``, the explainers and the app hold an ``EmotionModel`` and never ask which
kind it is. What every caller needs:

* ``read(text)``: the words of the text as typed and the ones the model reads (``ReadWords``);
* ``word_encoders`` / ``encoders`` / ``names`` / ``fine_tuned``: per base encoder, its tokenizer
  with the sub-word → word map, the transformer, its name, and whether it was fine-tuned;
* ``encode_words(word_lists)``: one padded batch per encoder and the word count per text;
* ``forward(batches, n_words, inputs_embeds=…)``: logits, differentiable from each encoder's
  input embeddings (Integrated Gradients moves them all at once);
* ``predict_proba(texts)``: probabilities, batched in length order on the model's own
  :class:`~emoscope.models.runtime.Runtime` (device, precision, batch size);
* ``eager_encoder(i)``: a copy of encoder ``i`` that returns attention weights, made on first use;
* ``word_layer`` / ``from_word_layer`` / ``word_path_logits``: the same forward cut where the model's
  head reads its word (or token) vectors (:class:`WordLayer`), for attributions taken at that layer.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from emoscope.models.runtime import Runtime
from emoscope.words import ReadWords, WordEncoder

Batch = dict[str, torch.Tensor]


@dataclass
class WordLayer:
    """The vectors a model's head reads, one per position, for ``B`` texts: a stack's meta-learner
    input (each word's stacked vector, positions = words), a single encoder's last hidden states
    (positions = tokens). ``positions [B, P]``: the model word each position belongs to (-1: a
    special, prefix or padding token); ``context``: what else the head reads, per text (attention
    mask, base classifiers' logits); ``name``: what the vectors are, in words; ``per_word``: position
    ``p`` is word ``p`` (a stack), rather than a token (a single encoder); ``segments``: the widths of
    the per-encoder parts of each vector (a stack's encoders, in order)."""

    vectors: torch.Tensor
    positions: torch.Tensor
    n_words: torch.Tensor
    context: dict[str, torch.Tensor] = field(default_factory=dict)
    name: str = ""
    per_word: bool = False
    segments: tuple[int, ...] = ()


class EmotionModel(nn.Module):
    """A multi-label emotion model over the shared words (see the module docstring)."""

    kind: ClassVar[str]

    def __init__(self, word_encoders: Sequence[WordEncoder], names: Sequence[str], fine_tuned: Sequence[bool]):
        super().__init__()
        self.word_encoders = list(word_encoders)
        self.names = list(names)
        self.fine_tuned = list(fine_tuned)
        self.runtime = Runtime()
        self._eager: dict[int, nn.Module] = {}
        self._lock = threading.Lock()

    @property
    def encoders(self) -> list[nn.Module]:
        """The base transformers, in the order of ``word_encoders`` and ``names``."""
        raise NotImplementedError

    @property
    def n_labels(self) -> int:
        raise NotImplementedError

    @property
    def text_base_names(self) -> list[str]:
        """Base models that read the words themselves, not through an encoder (a stack's TF-IDF
        base): gradients and attention do not reach them."""
        return []

    @property
    def max_length(self) -> int:
        """The longest token sequence any encoder reads."""
        return max(we.max_length for we in self.word_encoders)

    def place(self, runtime: Runtime) -> EmotionModel:
        """Run on ``runtime`` from now on (moves the weights to its device)."""
        self.runtime = runtime
        return self.to(runtime.device)

    def read(self, text: str) -> ReadWords:
        """The words of ``text`` as typed, and those the model reads."""
        return self.word_encoders[0].read(text)

    def encode_words(self, word_lists: Sequence[Sequence[str]]) -> tuple[list[Batch], torch.Tensor]:
        """One padded batch per encoder and the word count of each text."""
        batches = [we.pad(we.encode(word_lists)) for we in self.word_encoders]
        return batches, torch.as_tensor([len(w) for w in word_lists])

    def encode_texts(self, texts: Sequence[str]) -> tuple[list[Batch], torch.Tensor]:
        """:meth:`encode_words` of the words each text is read as."""
        return self.encode_words([self.read(t).model_words for t in texts])

    def to_device(self, batches: Sequence[Batch]) -> list[Batch]:
        device = self.runtime.device
        return [{k: v.to(device) for k, v in b.items()} for b in batches]

    def forward(self, batches: Sequence[Batch], n_words: torch.Tensor, *,
                inputs_embeds: Sequence[torch.Tensor] | None = None, return_features: bool = False,
                for_gradients: bool = False) -> Any:
        """Logits ``[B, L]`` (and the pooled features the loss's representation term reads, with
        ``return_features``). ``inputs_embeds``: each encoder's input embeddings instead of its
        token ids; ``for_gradients``: the caller will differentiate through the result."""
        raise NotImplementedError

    def word_layer(self, batches: Sequence[Batch], n_words: torch.Tensor, *,
                   inputs_embeds: Sequence[torch.Tensor] | None = None) -> WordLayer:
        """The first half of :meth:`forward`: the vectors the head reads (fp32)."""
        raise NotImplementedError

    def from_word_layer(self, layer: WordLayer, vectors: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                        for_gradients: bool = False) -> torch.Tensor:
        """The second half of :meth:`forward`: logits ``[R, L]`` from ``vectors [R, P, D]`` (default:
        the layer's own) read with the context of text ``rows[r]`` of ``layer`` (default: row r)."""
        raise NotImplementedError

    def word_path_logits(self, layer: WordLayer, baseline: torch.Tensor, s: torch.Tensor,
                         for_gradients: bool = True) -> torch.Tensor:
        """Logits ``[B, n, L]`` at ``baseline + s * (layer.vectors - baseline)`` for ``n`` rows of
        scales per text, ``s [B, n, P]`` (one per position), differentiable in ``s``: Integrated
        Gradients at this layer needs exactly these. A model may compute them without building
        the vectors (the stack does)."""
        texts, per_text = s.shape[:2]
        vectors = baseline[:, None] + s.unsqueeze(-1) * (layer.vectors - baseline)[:, None]
        rows = torch.arange(texts, device=s.device).repeat_interleave(per_text)
        logits = self.from_word_layer(layer, vectors.flatten(0, 1), rows, for_gradients)
        return logits.view(texts, per_text, -1)

    def predict_proba(self, texts: Sequence[str], *, batch_size: int | None = None,
                      precision: str | None = None) -> np.ndarray:
        """Probabilities ``[n, L]`` in input order; ``batch_size`` and ``precision`` default to the runtime's."""
        raise NotImplementedError

    def _eval(self) -> None:
        if self.training:  # eval() walks every module (~0.5 ms): only pay it when switching
            self.eval()

    def eager_encoder(self, index: int) -> nn.Module:
        """A copy of encoder ``index`` with eager attention (attention weights exposed), made on first
        use, so only the encoders whose attention is asked for cost memory and the shared model's
        faster attention kernel is never switched."""
        with self._lock:
            if index not in self._eager:
                eager = copy.deepcopy(self.encoders[index])
                eager.set_attn_implementation("eager")
                self._eager[index] = eager.eval()
            return self._eager[index]
