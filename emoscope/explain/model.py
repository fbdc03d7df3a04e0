"""The loaded bundle as the explainers see it (:class:`ExplainModel`).

A thin view of a ``Predictor``: its labels and thresholds, a cache key, and its
:class:`~emoscope.models.EmotionModel`, which already gives every method the same words,
per-encoder word maps and a differentiable forward from input embeddings whichever model the
bundle holds. Nothing here looks at the bundle's folder beyond its manifest's mtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from emoscope.bundle import manifest_mtime
from emoscope.text import Word


class ExplainModel:
    """A loaded bundle (``Predictor``) as the explainers see it: its labels and thresholds, and its
    :class:`~emoscope.models.EmotionModel` (words, encoders with word maps, a differentiable
    forward from each encoder's input embeddings)."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.model = predictor.model
        self.labels: list[str] = list(predictor.labels)
        self.thresholds = np.asarray(predictor.thresholds, dtype=float)
        self.device = self.model.runtime.device
        self.names = self.model.names
        self.fine_tuned = self.model.fine_tuned
        self.encoders = self.model.encoders
        self.word_encoders = self.model.word_encoders
        self.normalizer = self.word_encoders[0].normalizer

    @property
    def cache_key(self) -> tuple[str, float]:
        """The bundle's path and its manifest's mtime: a bundle saved again is explained afresh."""
        path = self.predictor.path
        return str(path.resolve()), manifest_mtime(path)

    @property
    def layers(self) -> list[int | None]:
        """How many transformer layers each encoder has (None where its config does not say)."""
        return [getattr(getattr(enc, "config", None), "num_hidden_layers", None) for enc in self.encoders]

    def words(self, text: str) -> tuple[list[Word], list[int], list[str]]:
        """Words of the text as typed, the original index of each word the model reads, and
        the normalised words it reads (the empty-normalising and cut-off words are not read)."""
        read = self.model.read(text)
        return read.words, read.read, read.model_words

    def batches(self, model_words: list[str]) -> list[dict[str, torch.Tensor]]:
        return self.model.to_device(self.model.encode_words([model_words])[0])

    def input_embeddings(self, batches: Sequence[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        return [enc.get_input_embeddings()(b["input_ids"]).detach() for enc, b in zip(self.encoders, batches)]

    def baselines(self, batches: Sequence[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        """Padding embeddings at every word token; special and prefix tokens keep their own."""
        out = []
        for enc, we, b in zip(self.encoders, self.word_encoders, batches):
            ids = torch.where(b["word_index"] >= 0, torch.full_like(b["input_ids"], we.pad_id), b["input_ids"])
            out.append(enc.get_input_embeddings()(ids).detach())
        return out

    def forward_embeds(self, embeds: Sequence[torch.Tensor], batches: Sequence[dict[str, torch.Tensor]],
                       n_words: int) -> torch.Tensor:
        """Probabilities ``[B, L]`` from each encoder's input embeddings ``[B, T_k, H_k]``."""
        rows = embeds[0].shape[0]
        expanded = [{k: v.expand(rows, -1) for k, v in b.items()} for b in batches]
        counts = torch.full((rows,), n_words, dtype=torch.long, device=embeds[0].device)
        logits = self.model(expanded, counts, inputs_embeds=list(embeds), for_gradients=True)
        return torch.sigmoid(logits.float())

    def predict_texts(self, texts: Sequence[str], batch_size: int | None = None,
                      precision: str | None = None) -> np.ndarray:
        """Probabilities for perturbed texts (an empty one reads as one unknown word).

        ``precision=None`` predicts exactly as ``Predictor`` does; ``auto``/``bf16``/``fp32``: see
        :func:`emoscope.models.autocast_context`."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.model.predict_proba(list(texts), batch_size=batch_size or 64, precision=precision)

    def eager_encoder(self, index: int) -> Any:
        """A copy of encoder ``index`` with eager attention, made on first use."""
        return self.model.eager_encoder(index)


def as_explain_model(model: Any) -> ExplainModel:
    """``model`` itself when it is an :class:`ExplainModel`, else the explainer view of a ``Predictor``."""
    return model if isinstance(model, ExplainModel) else ExplainModel(model)
