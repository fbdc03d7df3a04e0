"""Fine-tuning only an encoder's top layers, the frozen layers below it read once per text.

``train_layers = N`` on a recipe's encoder trains its top N transformer layers, whatever follows
them (Gemma's final norm) and the head; the embeddings and the layers below stay at their
pretrained weights. Those frozen layers then give a text the same output in every epoch and in
every stage-1 fit, so :class:`LowerLayerStates` computes it once (kept in the embedding cache on
disk, keyed by the frozen weights, the layer and the text's token ids) and each training step,
validation pass and stage-2 read runs only the top N layers on it: for EmbeddingGemma's top 2 of
24 layers about a twelfth of the work, which is what makes fine-tuning it possible on a CPU.

The bundle holds the whole encoder with its updated top layers; prediction and the explainers run
it as any fine-tuned encoder. Inside :meth:`LowerLayerStates.reading` a forward pre-hook hands the
first trained layer the stored states, and the layers below are replaced, for that call only, by
pass-throughs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from emoscope.errors import ConfigError
from emoscope.models import EncoderClassifier, autocast_context
from emoscope.models.fingerprint import tensors_fingerprint
from emoscope.models.runtime import batched_probs, length_batches
from emoscope.training.stack.embeddings import EmbeddingCache, RaggedRows
from emoscope.words import Encoded, WordEncoder


def layer_stack(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    """The encoder's list of transformer layers (its name and the list): the ``ModuleList`` of
    ``config.num_hidden_layers`` modules (``layers`` in Gemma, ``encoder.layer`` in BERT and XLM-R)."""
    n = getattr(encoder.config, "num_hidden_layers", None)
    for name, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and n and len(module) == n:
            return name, module
    raise ConfigError(f"encoder.train_layers: cannot find the transformer layers of this "
                      f"{type(encoder).__name__} (no list of {n} layers); leave train_layers at 0")


def _trains(encoder: nn.Module, n_top: int) -> dict[str, bool]:
    """Per parameter name, whether it trains with ``train_layers = n_top``: the top ``n_top`` layers
    and the modules after the layer stack (in registration order: Gemma's final norm)."""
    name, layers = layer_stack(encoder)
    if not 1 <= n_top <= len(layers):
        raise ConfigError(f"encoder.train_layers = {n_top}, but this encoder has {len(layers)} layers "
                          f"(give 1 to {len(layers)}, or 0 to train them all)")
    top = tuple(f"{name}.{i}." for i in range(len(layers) - n_top, len(layers)))
    after_stack, trains = False, {}
    for pname, _ in encoder.named_parameters():
        in_stack = pname.startswith(f"{name}.")
        after_stack = after_stack or in_stack
        trains[pname] = pname.startswith(top) or (after_stack and not in_stack)
    return trains


def freeze_below_top(encoder: nn.Module, n_top: int) -> int:
    """Freeze everything but what trains with ``train_layers = n_top``; returns how many
    parameters that freezes."""
    trains = _trains(encoder, n_top)
    frozen = 0
    for pname, param in encoder.named_parameters():
        param.requires_grad_(trains[pname])
        frozen += 0 if trains[pname] else param.numel()
    return frozen


def frozen_fingerprint(encoder: nn.Module, n_top: int) -> str:
    """The fingerprint of the weights ``train_layers = n_top`` leaves frozen: the same for the
    pretrained encoder and for every model fine-tuned from it that way."""
    trains = _trains(encoder, n_top)
    return tensors_fingerprint((k, v) for k, v in encoder.named_parameters() if not trains[k])


class _Captured(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""


def _hidden_of(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _pass_through(*args, **kwargs) -> torch.Tensor:
    return _hidden_of(args, kwargs)


class LowerLayerStates:
    """The input of the first trained layer for each of ``encoded``'s texts (``[tokens, hidden]``,
    fp32, on the CPU), computed once by ``encoder``'s frozen layers or read from ``cache``; keyed by
    the frozen weights (:func:`frozen_fingerprint`), the layer, the device kind and the token ids."""

    def __init__(self, encoder: nn.Module, word_encoder: WordEncoder, device: torch.device, n_top: int,
                 encoded: Sequence[Encoded], cache: EmbeddingCache, batch_size: int = 16):
        _, self.layers = layer_stack(encoder)
        self.first = len(self.layers) - n_top
        self.encoder, self.word_encoder, self.device = encoder, word_encoder, device
        self.encoded, self.batch_size = list(encoded), batch_size
        key = hashlib.sha256(json.dumps({"frozen_weights": frozen_fingerprint(encoder, n_top), "layer_input": self.first,
                                         "device": device.type}, sort_keys=True).encode()).hexdigest()[:24]
        text_keys = [hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:32]
                     for ids, _ in self.encoded]
        self.states: list[torch.Tensor] = []
        self.cached = 0
        if self.encoded:
            rows, self.cached = cache.get(f"lower-{key}", text_keys, self._compute)
            self.states = [torch.from_numpy(r) for r in rows.rows(range(len(rows)))]

    def _compute(self, positions: list[int]) -> RaggedRows:
        encoder, out = self.encoder, {}
        was_training = encoder.training
        encoder.eval()

        def capture(_module, args, kwargs):
            out["hidden"] = _hidden_of(args, kwargs).float().cpu()
            raise _Captured

        handle = self.layers[self.first].register_forward_pre_hook(capture, with_kwargs=True)
        rows: dict[int, np.ndarray] = {}
        try:
            lengths = [len(self.encoded[p][0]) for p in positions]
            for batch_idx in length_batches(lengths, self.batch_size):
                chosen = [positions[i] for i in batch_idx]
                batch = self.word_encoder.pad([self.encoded[p] for p in chosen])
                with torch.inference_mode(), autocast_context(self.device), contextlib.suppress(_Captured):
                    encoder(input_ids=batch["input_ids"].to(self.device),
                            attention_mask=batch["attention_mask"].to(self.device))
                for row, p in enumerate(chosen):
                    rows[p] = out["hidden"][row, :len(self.encoded[p][0])].numpy()
        finally:
            handle.remove()
            encoder.train(was_training)
        return RaggedRows.of_rows([rows[p] for p in positions])

    @contextlib.contextmanager
    def reading(self, idx: Sequence[int]) -> Iterator[None]:
        """Within it, the encoder's forward pass on the padded batch of texts ``idx`` (in that order)
        skips the frozen layers and starts the trained ones from the stored states."""
        width = max(len(self.states[i]) for i in idx)
        hidden = torch.zeros((len(idx), width, self.states[idx[0]].shape[1]), dtype=torch.float32)
        for row, i in enumerate(idx):
            hidden[row, :len(self.states[i])] = self.states[i]
        hidden = hidden.to(self.device)

        def substitute(_module, args, kwargs):
            given = _hidden_of(args, kwargs)
            if given.shape[:2] != hidden.shape[:2]:
                raise RuntimeError(f"stored states {tuple(hidden.shape[:2])} do not match the batch {tuple(given.shape[:2])}")
            state = hidden.to(given.dtype)
            if args:
                return (state, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": state}

        handle = self.layers[self.first].register_forward_pre_hook(substitute, with_kwargs=True)
        for layer in self.layers[:self.first]:
            layer.forward = _pass_through  # an instance attribute: nn.Module.__call__ finds it first
        try:
            yield
        finally:
            handle.remove()
            for layer in self.layers[:self.first]:
                del layer.forward

    @torch.inference_mode()
    def probs(self, model: EncoderClassifier, batch_size: int) -> np.ndarray:
        """The classifier's probabilities of every text, through the stored states (eval mode)."""
        was_training = model.training
        model.eval()

        def logits_of(idx: np.ndarray) -> torch.Tensor:
            batch = model.to_device([self.word_encoder.pad([self.encoded[i] for i in idx])])[0]
            with self.reading(idx), autocast_context(self.device):
                return model.logits(batch)

        try:
            return batched_probs([len(ids) for ids, _ in self.encoded], batch_size, model.n_labels, logits_of)
        finally:
            model.train(was_training)
