"""The single-encoder multi-label classifier: a transformer, token pooling, one linear head.

``EncoderClassifier`` pools the transformer's token vectors (CLS or attention-masked mean),
applies dropout and one linear layer giving one logit per label. It reads texts through a
:class:`~emoscope.words.WordEncoder` (the shared words, no word cut) and saves and loads itself
piece by piece: the encoder and tokenizer in ``save_pretrained`` layout, the head in safetensors.
It is both the model that stage 1 and single-encoder recipes fine-tune and, loaded from a bundle,
an :class:`~emoscope.models.base.EmotionModel`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from emoscope.encoders import load_encoder
from emoscope.errors import BundleError, EncoderError
from emoscope.models.base import Batch, EmotionModel, WordLayer
from emoscope.models.runtime import batched_probs
from emoscope.text import NormalizerConfig
from emoscope.words import Encoded, WordEncoder

TOKEN_POOLINGS = ("cls", "mean")


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vector from token vectors: the first token (``cls``), or the mean over real tokens."""
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def load_head(path: Path, hidden: int, n_labels: int) -> nn.Linear:
    """A classifier head from ``head.safetensors``; ``BundleError`` when unreadable or misshapen."""
    head = nn.Linear(hidden, n_labels)
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise BundleError(f"cannot read the classifier head {path}: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise BundleError(f"{path}: head shapes {found} do not match a {hidden}-d encoder and {n_labels} labels "
                          f"(expected {expected})")
    head.load_state_dict(state)
    return head.eval()


def require_fields(folder: Path, where: str, record: Any, names: Sequence[str]) -> None:
    """``BundleError`` when the manifest leaves out a field this model kind needs."""
    missing = [n for n in names if getattr(record, n) is None]
    if missing:
        raise BundleError(f"{folder}: manifest.json: {where} has no '{missing[0]}', which this kind of model needs")


def head_labels(path: Path) -> list[str] | None:
    """The label names saved beside a classifier head, or None (heads saved before they were)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("labels")
    except (OSError, SafetensorError) as exc:
        raise BundleError(f"cannot read the classifier head {path}: {exc}") from exc
    return json.loads(raw) if raw else None


class EncoderClassifier(EmotionModel):
    """A transformer encoder with a pooled multi-label head."""

    kind = "encoder-classifier"

    def __init__(self, encoder: nn.Module, word_encoder: WordEncoder, n_labels: int, pooling: str = "mean",
                 dropout: float = 0.1, name: str = "encoder", labels: Sequence[str] | None = None):
        """``labels``: the label names, in the head's order, when known: saved beside the head so
        that a bundle whose label list was edited is refused on loading."""
        if pooling not in TOKEN_POOLINGS:
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if labels is not None and len(labels) != n_labels:
            raise ValueError(f"{len(labels)} label names for a head of {n_labels} labels")
        super().__init__([word_encoder], [name], [True])
        self.labels = list(labels) if labels is not None else None
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    @property
    def encoders(self) -> list[nn.Module]:
        return [self.encoder]

    @property
    def word_encoder(self) -> WordEncoder:
        return self.word_encoders[0]

    @property
    def n_labels(self) -> int:
        return self.head.out_features

    def logits(self, batch: Batch, inputs_embeds: torch.Tensor | None = None,
               return_features: bool = False) -> Any:
        """Logits ``[B, L]`` of one padded batch (and the pooled vectors they came from)."""
        return self._head(self._hidden(batch, inputs_embeds), batch["attention_mask"], return_features)

    def _hidden(self, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": batch["input_ids"]}
        return self.encoder(attention_mask=batch["attention_mask"], **inputs).last_hidden_state

    def _head(self, hidden: torch.Tensor, attention_mask: torch.Tensor, return_features: bool = False) -> Any:
        pooled = pool_tokens(hidden, attention_mask, self.pooling)
        # The head runs in fp32 even under autocast (which would cast a Linear to bf16):
        # logits feed sigmoid thresholds tuned to two decimals.
        with torch.autocast(pooled.device.type, enabled=False):
            logits = self.head(self.dropout(pooled).float())
        return (logits, pooled) if return_features else logits

    def word_layer(self, batches: Sequence[Batch], n_words: torch.Tensor | None = None, *,
                   inputs_embeds: Sequence[torch.Tensor] | None = None) -> WordLayer:
        """The encoder's last hidden states (positions = tokens), which the pooled head reads."""
        batch = batches[0]
        hidden = self._hidden(batch, None if inputs_embeds is None else inputs_embeds[0])
        if n_words is None:
            n_words = (batch["word_index"].max(-1).values + 1).clamp(min=0)
        return WordLayer(hidden, batch["word_index"], n_words, {"attention_mask": batch["attention_mask"]},
                         f"the encoder's last hidden state of each token ({self.pooling}-pooled by the head)")

    def from_word_layer(self, layer: WordLayer, vectors: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                        for_gradients: bool = False) -> torch.Tensor:
        mask = layer.context["attention_mask"]
        return self._head(layer.vectors if vectors is None else vectors, mask if rows is None else mask[rows])

    def forward(self, batches: Sequence[Batch], n_words: torch.Tensor | None = None, *,
                inputs_embeds: Sequence[torch.Tensor] | None = None, return_features: bool = False,
                for_gradients: bool = False) -> Any:
        return self.logits(batches[0], None if inputs_embeds is None else inputs_embeds[0], return_features)

    @torch.inference_mode()
    def probs_of_encoded(self, encoded: Sequence[Encoded], batch_size: int | None = None,
                         precision: str | None = None) -> np.ndarray:
        """Probabilities of texts already tokenised by ``word_encoder`` (training tokenises its
        validation texts once and scores them every epoch)."""
        self._eval()
        runtime = self.runtime

        def logits_of(idx: np.ndarray) -> torch.Tensor:
            batch = self.to_device([self.word_encoder.pad([encoded[i] for i in idx])])[0]
            with runtime.autocast(precision):
                return self.logits(batch)

        return batched_probs([len(ids) for ids, _ in encoded], batch_size or runtime.batch_size, self.n_labels,
                             logits_of)

    def predict_proba(self, texts: Sequence[str], *, batch_size: int | None = None,
                      precision: str | None = None) -> np.ndarray:
        return self.probs_of_encoded(self.word_encoder.encode_texts(texts), batch_size, precision)

    def freeze_word_embeddings(self) -> int:
        """Stop training the word-embedding matrix; returns how many parameters that freezes.

        For multilingual-e5-small the 250k-row embedding is 82% of the parameters and most of
        AdamW's time on CPU; the rest of the network still adapts.
        """
        embeddings = self.encoder.get_input_embeddings()
        embeddings.weight.requires_grad_(False)
        return embeddings.weight.numel()

    def save(self, folder: Path) -> None:
        """Write ``encoder/`` (model + tokenizer, ``save_pretrained`` layout) and ``head.safetensors``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder / "encoder", safe_serialization=True)
        self.word_encoder.tokenizer.save_pretrained(folder / "encoder")
        metadata = {"labels": json.dumps(self.labels, ensure_ascii=False)} if self.labels is not None else None
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(folder / "head.safetensors"), metadata=metadata)

    @classmethod
    def load(cls, folder: Path, n_labels: int, pooling: str, normalizer: NormalizerConfig, max_length: int,
             prefix: str = "", max_words: int | None = None, name: str = "encoder",
             labels: Sequence[str] | None = None) -> EncoderClassifier:
        """Load what :meth:`save` wrote, in eval mode, reading texts with the given word settings.
        ``labels`` are checked against the names saved beside the head (heads saved before names
        were recorded there cannot be checked)."""
        try:
            tokenizer, encoder = load_encoder(str(folder / "encoder"), safetensors_only=True)
        except EncoderError as exc:
            raise BundleError(f"cannot load the model in {folder}: {exc}") from exc
        word_encoder = WordEncoder(tokenizer, normalizer, max_length, max_words, prefix)
        saved = head_labels(folder / "head.safetensors")
        if labels is not None and saved is not None and list(labels) != saved:
            raise BundleError(f"{folder.parent}: the label list in manifest.json ({', '.join(labels)}) does not match "
                              f"the labels the classifier was trained on ({', '.join(saved)}); the bundle was edited")
        model = cls(encoder, word_encoder, n_labels=n_labels, pooling=pooling, dropout=0.0, name=name, labels=saved)
        head = load_head(folder / "head.safetensors", encoder.config.hidden_size, n_labels)
        model.head.load_state_dict(head.state_dict())
        return model.eval()

    @classmethod
    def from_bundle(cls, folder: Path, manifest: Any) -> EncoderClassifier:
        """The model of a single-encoder bundle (``manifest``: its :class:`~emoscope.bundle.Manifest`)."""
        spec = manifest.model
        require_fields(folder, "model", spec, ("pooling", "max_length"))
        entry = spec.encoders[0]
        name = entry.source.rstrip("/").split("/")[-1]
        return cls.load(folder / spec.path, manifest.n_labels, spec.pooling, manifest.normalizer, spec.max_length,
                        entry.text_prefix, name=name, labels=manifest.labels)
