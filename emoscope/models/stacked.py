"""The stacked ensemble at inference: K encoders → word pooling → meta-learner, text in, logits out.

``StackedModel`` tokenises the shared words once per encoder, runs each encoder, pools its
sub-word vectors onto the words (:func:`~emoscope.words.pool_words`), optionally reads each
fine-tuned encoder's stage-1 classifier head (its logits), and gives the meta-learner the word
vectors concatenated per word. It is differentiable end to end, so attributions flow into every
encoder's input embeddings at once. A stacked bundle holds ``model/encoders/<k>-<name>/`` (each in
``save_pretrained`` layout, plus ``head.safetensors`` when the meta-learner reads that encoder's
logits) and ``model/meta.safetensors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoscope.encoders import load_encoder
from emoscope.errors import BundleError, EmoScopeError
from emoscope.models.base import Batch, EmotionModel, WordLayer
from emoscope.models.classifier import TOKEN_POOLINGS, load_head, pool_tokens, require_fields
from emoscope.models.fingerprint import weights_fingerprint
from emoscope.models.meta import MetaLearner, build_meta, gradient_ready, meta_config, read_meta
from emoscope.models.meta_path import path_logits
from emoscope.models.runtime import batched_probs
from emoscope.tfidf import TfidfModel, text_of_words
from emoscope.words import WordEncoder, pool_words

Head = tuple[nn.Module, str]
"""A stage-1 classifier head and the token pooling it reads."""


class StackedModel(EmotionModel):
    """K encoders + word pooling + meta-learner (see the module docstring)."""

    kind = "stacked"

    def __init__(self, encoders: Sequence[nn.Module], word_encoders: Sequence[WordEncoder], meta: MetaLearner,
                 word_pooling: str = "mean", names: Sequence[str] = (),
                 heads: Sequence[Head | None] | None = None, fine_tuned: Sequence[bool] | None = None,
                 text_bases: Sequence[tuple[str, TfidfModel]] = ()):
        """``heads``: per encoder, its stage-1 classifier head and token pooling, or None; the
        meta-learner reads the logits of the encoders that have one, then those of the
        ``text_bases`` (name, model: bases that read the words themselves), ``meta.n_base`` in all."""
        names = list(names) or [f"encoder{i}" for i in range(len(encoders))]
        super().__init__(word_encoders, names, fine_tuned if fine_tuned is not None else [True] * len(encoders))
        self.encoder_list = nn.ModuleList(encoders)
        self.meta = meta
        self.word_pooling = word_pooling
        heads = list(heads) if heads is not None else [None] * len(encoders)
        self.heads = nn.ModuleList(h[0] if h is not None else nn.Identity() for h in heads)
        self.head_pooling = [h[1] if h is not None else None for h in heads]
        self.text_bases = list(text_bases)
        given = sum(h is not None for h in heads) + len(self.text_bases)
        if given != meta.n_base:
            raise ValueError(f"the meta-learner reads {meta.n_base} base classifiers; {given} heads and text bases given")
        self._gradient_meta: MetaLearner | None = None

    @property
    def encoders(self) -> list[nn.Module]:
        return list(self.encoder_list)

    @property
    def n_labels(self) -> int:
        return self.meta.n_labels

    @property
    def text_base_names(self) -> list[str]:
        return [name for name, _ in self.text_bases]

    def encode_words(self, word_lists: Sequence[Sequence[str]]) -> tuple[list[Batch], torch.Tensor]:
        """:meth:`EmotionModel.encode_words`; with text bases, their logits ``[B, n_text_bases * L]``
        ride in the first encoder's batch as ``text_base_logits``, so whatever moves, expands or
        slices the batches carries them along. They are constants of the text: no gradient
        reaches them."""
        batches, n_words = super().encode_words(word_lists)
        if self.text_bases:
            texts = [text_of_words(w) for w in word_lists]
            logits = np.concatenate([model.logits(texts) for _, model in self.text_bases], axis=1)
            batches[0]["text_base_logits"] = torch.from_numpy(logits.astype(np.float32))
        return batches, n_words

    @property
    def gradient_meta(self) -> MetaLearner:
        """The meta-learner as a copy that gradients can flow through on a GPU too
        (:func:`~emoscope.models.meta.gradient_ready`), made on first use."""
        with self._lock:
            if self._gradient_meta is None:
                self._gradient_meta = gradient_ready(self.meta)
            return self._gradient_meta

    def forward(self, batches: Sequence[Batch], n_words: torch.Tensor, *,
                inputs_embeds: Sequence[torch.Tensor] | None = None, return_features: bool = False,
                for_gradients: bool = False) -> Any:
        """Logits ``[B, L]``. Only the encoders run under the caller's autocast: word pooling,
        the base heads and the meta-learner run in fp32, exactly as in stages 2 and 3, where the
        word vectors were pooled in fp32 and the meta-learner trained and tuned its thresholds
        in fp32. ``for_gradients`` reads the words with the gradient-ready meta-learner copy."""
        layer = self.word_layer(batches, n_words, inputs_embeds=inputs_embeds)
        return self.from_word_layer(layer, for_gradients=for_gradients, return_features=return_features)

    def word_layer(self, batches: Sequence[Batch], n_words: torch.Tensor, *,
                   inputs_embeds: Sequence[torch.Tensor] | None = None) -> WordLayer:
        """Each word's stacked vector (the meta-learner's input, fp32) and, as context, the base
        classifiers' logits when the meta-learner reads them."""
        width = int(n_words.max())
        parts, base = [], []
        for k, (encoder, batch) in enumerate(zip(self.encoder_list, batches)):
            embeds = inputs_embeds[k] if inputs_embeds is not None else None
            inputs = {"inputs_embeds": embeds} if embeds is not None else {"input_ids": batch["input_ids"]}
            hidden = encoder(attention_mask=batch["attention_mask"], **inputs).last_hidden_state
            with torch.autocast(hidden.device.type, enabled=False):
                parts.append(pool_words(hidden.float(), batch["word_index"], width, self.word_pooling))
                if self.head_pooling[k] is not None:
                    base.append(self.heads[k](pool_tokens(hidden.float(), batch["attention_mask"], self.head_pooling[k])))
        if self.text_bases:
            base.append(batches[0]["text_base_logits"].float())
        vectors = torch.cat(parts, dim=-1)
        positions = torch.arange(width, device=vectors.device).expand(len(vectors), -1)
        positions = positions.masked_fill(positions >= n_words.to(vectors.device)[:, None], -1)
        context = {"base": torch.cat(base, dim=-1)} if base else {}
        return WordLayer(vectors, positions, n_words, context,
                         "each word's contextual vector from every encoder, stacked (the meta-learner's input)",
                         per_word=True, segments=tuple(part.shape[-1] for part in parts))

    def from_word_layer(self, layer: WordLayer, vectors: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                        for_gradients: bool = False, return_features: bool = False) -> Any:
        meta = self.gradient_meta if for_gradients else self.meta
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        base = layer.context.get("base")
        with torch.autocast(layer.vectors.device.type, enabled=False):
            return meta(layer.vectors if vectors is None else vectors, pick(layer.n_words),
                        return_features=return_features, base=None if base is None else pick(base))

    def word_path_logits(self, layer: WordLayer, baseline: torch.Tensor, s: torch.Tensor,
                         for_gradients: bool = True) -> torch.Tensor:
        """The meta-learner along the path without building a vector per step (``meta_path``)."""
        with torch.autocast(layer.vectors.device.type, enabled=False):
            return path_logits(self.gradient_meta if for_gradients else self.meta, layer.vectors, baseline, s,
                               layer.n_words, layer.context.get("base"))

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], *, batch_size: int | None = None,
                      precision: str | None = None) -> np.ndarray:
        self._eval()
        runtime = self.runtime
        word_lists = [self.word_encoders[0].words(t) for t in texts]  # once per text: sorting and encoding share them

        def logits_of(idx: np.ndarray) -> torch.Tensor:
            batches, n_words = self.encode_words([word_lists[i] for i in idx])
            with runtime.autocast(precision):
                return self(self.to_device(batches), n_words.to(runtime.device))

        return batched_probs([len(w) for w in word_lists], batch_size or runtime.batch_size, self.n_labels, logits_of)

    @classmethod
    def from_bundle(cls, folder: Path, manifest: Any) -> StackedModel:
        """Load a stacked bundle's model, refusing encoders or labels that no longer match the meta-learner."""
        spec = manifest.model
        require_fields(folder, "model", spec, ("max_words", "meta"))
        for k, entry in enumerate(spec.encoders):
            require_fields(folder, f"model.encoders[{k}]", entry, ("path", "max_length"))
        labels = manifest.labels
        root = folder / spec.path
        entries = spec.encoders
        meta_path = root / "meta.safetensors"
        saved = read_meta(meta_path)
        if saved.labels != labels:
            raise BundleError(f"{folder}: the label list in manifest.json ({', '.join(labels)}) does not match the "
                              f"labels the meta-learner was trained on ({', '.join(saved.labels)}); the bundle was edited")
        if len(saved.fingerprints) != len(entries) or len(saved.input_sizes) != len(entries):
            raise BundleError(f"{folder}: the manifest lists {len(entries)} encoders but the meta-learner was trained on "
                              f"{len(saved.fingerprints)}")
        if any(not isinstance(i, int) or not 0 <= i < len(entries) for i in saved.base_encoders):
            raise BundleError(f"{meta_path}: base_encoders {saved.base_encoders} do not name encoders of this bundle")
        encoders, word_encoders, heads = [], [], []
        for k, entry in enumerate(entries):
            encoder, word_encoder = _load_member(folder, root, k, entry, saved, manifest)
            encoders.append(encoder)
            word_encoders.append(word_encoder)
            heads.append(_member_head(folder, root / entry.path, entry, saved.input_sizes[k], len(labels))
                         if k in saved.base_encoders else None)
        text_bases = _load_text_bases(folder, root, spec.bases or [], saved.text_bases, labels)
        meta = build_meta(saved.input_sizes, len(labels), meta_config(spec.meta),
                          n_base=len(saved.base_encoders) + len(text_bases))
        try:
            meta.load_state_dict(saved.state)
        except RuntimeError as exc:
            raise BundleError(f"{meta_path}: weights do not fit the meta-learner described in the manifest "
                              f"({str(exc).splitlines()[0]})") from exc
        meta.eval()
        return cls(encoders, word_encoders, meta, spec.word_pooling or "mean",
                   [e.name or f"encoder{i}" for i, e in enumerate(entries)], heads,
                   [e.fine_tuned for e in entries], text_bases)


def _load_text_bases(folder: Path, root: Path, entries: list[dict[str, Any]], saved: list[str],
                     labels: list[str]) -> list[tuple[str, TfidfModel]]:
    """The bundle's text bases (``model.bases``), refused unless they are the ones the
    meta-learner was trained to read, in its order."""
    names = [str(e.get("name")) for e in entries]
    if names != saved:
        raise BundleError(f"{folder}: the manifest lists the text bases [{', '.join(names)}] but the meta-learner "
                          f"reads [{', '.join(saved)}]; the bundle was edited")
    for entry in entries:
        if entry.get("kind") != "tfidf":
            raise BundleError(f"{folder}: text base {entry.get('name')} is of kind {entry.get('kind')!r}; this "
                              "EmoScope version knows only 'tfidf'")
    return [(str(e["name"]), TfidfModel.load(root / e["path"], labels)) for e in entries]


def _load_member(folder: Path, root: Path, k: int, entry: Any, saved: Any, manifest: Any) -> tuple[nn.Module, WordEncoder]:
    """Encoder ``k`` of a stacked bundle and its word encoder, checked against the meta-learner's record."""
    try:
        tokenizer, encoder = load_encoder(str(root / entry.path), safetensors_only=True)
    except EmoScopeError as exc:
        raise BundleError(f"{folder}: encoder {k} ({entry.name}): {exc}") from exc
    if weights_fingerprint(encoder) != saved.fingerprints[k]:
        raise BundleError(f"{folder}: encoder {k} ({entry.name}) in {entry.path} is not the encoder the "
                          "meta-learner was trained on (its weights differ): the encoders were swapped or replaced")
    if encoder.config.hidden_size != saved.input_sizes[k]:
        raise BundleError(f"{folder}: encoder {k} gives {encoder.config.hidden_size}-d vectors, the meta-learner "
                          f"expects {saved.input_sizes[k]}")
    word_encoder = WordEncoder(tokenizer, manifest.normalizer, entry.max_length, manifest.model.max_words,
                               entry.text_prefix)
    return encoder.eval(), word_encoder


def _member_head(bundle: Path, encoder_dir: Path, entry: Any, hidden: int, n_labels: int) -> Head:
    """An encoder's stage-1 classifier head (``head.safetensors`` next to it) and its pooling."""
    path = encoder_dir / "head.safetensors"
    if not path.is_file():
        raise BundleError(f"{bundle}: the meta-learner reads the classifier of encoder {entry.name}, but its "
                          f"head {path} cannot be read: no such file")
    pooling = entry.pooling or "mean"
    head = load_head(path, hidden, n_labels)
    if pooling not in TOKEN_POOLINGS:
        raise BundleError(f"{bundle}: encoder {entry.name} has an unknown pooling '{pooling}'")
    return head, pooling
