"""The single-encoder multi-label classifier and the text→tensor step every model shares.

``TextEncoder`` turns raw texts into padded sub-word tensors through the project's shared
word segmentation (``emoscope.text.prepare_words``): each word is normalised on its own
and handed to the tokenizer with ``is_split_into_words=True``, so every encoder and every
explainer sees the same words, in the same order, with offsets into the text as typed.

``EncoderClassifier`` is a transformer encoder, a pooling over its token vectors (CLS or
attention-masked mean), dropout and one linear layer giving one logit per label. It saves
and loads itself piece by piece: the encoder and tokenizer in ``save_pretrained`` layout,
the head in safetensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoscope.errors import BundleError
from emoscope.text import NormalizerConfig, prepare_words


class TextEncoder:
    """Normalise, segment and tokenise texts for one encoder."""

    def __init__(self, tokenizer: Any, normalizer: NormalizerConfig, max_length: int, prefix: str = ""):
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.max_length = max_length
        self.prefix_words = prefix.split()

    def words(self, text: str) -> list[str]:
        """The normalised words the tokenizer sees (the source's prefix word first, if any)."""
        _, normalised = prepare_words(text, self.normalizer)
        words = [w for w in normalised if w]
        if not words:
            # A text of nothing but tatweel or diacritics still needs one token to classify.
            words = [self.tokenizer.unk_token or "[UNK]"]
        return self.prefix_words + words

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Truncated, unpadded token ids (with special tokens) for each text."""
        encoded = self.tokenizer(
            [self.words(t) for t in texts],
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_length,
        )
        return encoded["input_ids"]

    def pad(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Pad a list of token-id lists into ``input_ids`` and ``attention_mask`` tensors."""
        width = max(len(x) for x in ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.pad(self.token_ids(texts))


class EncoderClassifier(nn.Module):
    """A transformer encoder with a pooled multi-label head: ``forward`` returns logits [B, L]."""

    def __init__(self, encoder: nn.Module, n_labels: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    @property
    def n_labels(self) -> int:
        return self.head.out_features

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool_tokens(hidden, attention_mask, self.pooling)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, L]; with ``return_features`` also the pooled vectors [B, D] they came from
        (losses with a representation term, such as the hybrid loss's contrastive term, need them)."""
        pooled = self.features(input_ids, attention_mask)
        # The head runs in fp32 even under autocast (which would cast a Linear to bf16):
        # logits feed sigmoid thresholds tuned to two decimals.
        with torch.autocast(pooled.device.type, enabled=False):
            logits = self.head(self.dropout(pooled).float())
        return (logits, pooled) if return_features else logits

    def freeze_word_embeddings(self) -> int:
        """Stop training the word-embedding matrix; returns how many parameters that freezes.

        For multilingual-e5-small the 250k-row embedding is 82% of the parameters and most of
        AdamW's time on CPU; the rest of the network still adapts.
        """
        embeddings = self.encoder.get_input_embeddings()
        embeddings.weight.requires_grad_(False)
        return embeddings.weight.numel()

    def save(self, folder: Path, tokenizer: Any) -> None:
        """Write ``encoder/`` (model + tokenizer, ``save_pretrained`` layout) and ``head.safetensors``."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder / "encoder", safe_serialization=True)
        tokenizer.save_pretrained(folder / "encoder")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(folder / "head.safetensors"))

    @classmethod
    def load(cls, folder: Path, n_labels: int, pooling: str) -> tuple[EncoderClassifier, Any]:
        """Load what :meth:`save` wrote; returns ``(model, tokenizer)`` in eval mode."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from emoscope.encoders import quiet_transformers

        quiet_transformers()
        encoder_dir = folder / "encoder"
        try:
            config = AutoConfig.from_pretrained(encoder_dir)
            kwargs = {"add_pooling_layer": False} if config.model_type == "bert" else {}
            encoder = AutoModel.from_pretrained(encoder_dir, config=config, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(encoder_dir, use_fast=True)
            head = load_file(str(folder / "head.safetensors"))
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise BundleError(f"cannot load the model in {folder}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
        model = cls(encoder, n_labels=n_labels, pooling=pooling, dropout=0.0)
        expected = {k: tuple(v.shape) for k, v in model.head.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in head.items()}
        if expected != found:
            raise BundleError(f"{folder / 'head.safetensors'}: head shapes {found} do not match "
                              f"the encoder and the manifest's {n_labels} labels (expected {expected})")
        model.head.load_state_dict(head)
        model.eval()
        return model, tokenizer


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vector from token vectors: the first token (``cls``), or the mean over real tokens."""
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


@torch.inference_mode()
def predict_probs(model: EncoderClassifier, text_encoder: TextEncoder, token_ids: Sequence[Sequence[int]],
                  batch_size: int, device: torch.device, precision: str | None = None) -> np.ndarray:
    """Sigmoid probabilities [n, L] for tokenised texts, in input order.

    Batches follow token length so each pads only to its own longest text. ``precision``: see
    :func:`autocast_context` (``None``, the default, keeps CPU predictions in fp32).
    """
    if model.training:  # eval() walks every module (~0.5 ms): only pay it when switching
        model.eval()
    out = np.zeros((len(token_ids), model.n_labels), dtype=np.float32)
    order = np.argsort([len(x) for x in token_ids], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in text_encoder.pad([token_ids[i] for i in idx]).items()}
        with autocast_context(device, precision):
            logits = model(**batch)
        out[idx] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present and asked for (``auto``), else CPU. A device this machine lacks (no CUDA,
    or a GPU index past the last one) or a malformed name is a ``ConfigError``, not a crash later."""
    from emoscope.errors import ConfigError

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"device '{requested}' is not a device name (use auto, cpu, cuda or cuda:N)") from err
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device '{requested}' is not supported (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{requested}' requested but CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device '{requested}' requested but this machine has {count} GPU(s): cuda:0 to cuda:{count - 1}")
    return device


def cuda_bf16(device: torch.device) -> bool:
    """Whether ``device`` is a GPU with native bf16 (compute capability 8.0+: A100, H100, RTX 30xx…).

    ``torch.cuda.is_bf16_supported()`` also says yes to older GPUs that only emulate bf16 (slow,
    no bf16 cuDNN kernels) and asks about the current GPU rather than ``device``."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def default_precision(device: torch.device) -> str:
    """The precision predictions and training use when none is asked for: bf16 on a GPU with
    native bf16, fp32 elsewhere (so CPU results are exactly fp32)."""
    return "bf16" if cuda_bf16(device) else "fp32"


def autocast_context(device: torch.device, precision: str | None = None):
    """The autocast context for inference on ``device``.

    ``precision=None`` (training, and predictions of bf16-trained bundles): bf16 autocast on GPUs
    with native bf16 (:func:`default_precision`), fp32 elsewhere, so CPU predictions stay exactly
    fp32. ``"auto"`` (explanations, which run the model hundreds of times): bf16 also on CPUs with
    AMX tiles, where bf16 matrix products are several times faster; ``"bf16"`` / ``"fp32"`` force
    one. See :func:`resolve_precision`.
    """
    if precision is None:
        precision = default_precision(device)
    if resolve_precision(device, precision) == "bf16":
        if device.type == "cpu":
            _install_cpu_fp32_attention()
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto`` → ``bf16`` on a bf16 CUDA GPU or an AMX CPU, else ``fp32``; others as given."""
    if precision not in PRECISIONS:
        from emoscope.errors import InputError

        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return default_precision(device)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return "bf16" if device.type == "cpu" and amx is not None and amx() else "fp32"


_FP32_ATTENTION_INSTALLED = False


def _install_cpu_fp32_attention() -> None:
    """Under CPU bf16 autocast, run transformers' SDPA attention kernel in fp32.

    Measured on this project's encoders (benchmarks/explain_speed.py): CPU bf16 autocast makes
    the linear layers ~4x faster (AMX), but PyTorch's bf16 flash-attention *backward* on CPU is
    ~7x slower than fp32, so Integrated Gradients got slower overall. Running only the attention
    kernel in fp32 keeps the fast linears and the fast fp32 kernel (and is more accurate). The
    wrapper changes nothing unless CPU autocast is on in the calling thread (autocast state is
    thread-local), so predictions and other sessions are unaffected. Installed once per process.
    """
    global _FP32_ATTENTION_INSTALLED
    if _FP32_ATTENTION_INSTALLED:
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def sdpa_fp32_on_cpu_autocast(module, query, key, value, attention_mask, *args, **kwargs):
        if query.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                mask = attention_mask.float() if attention_mask is not None and attention_mask.is_floating_point() else attention_mask
                return original(module, query.float(), key.float(), value.float(), mask, *args, **kwargs)
        return original(module, query, key, value, attention_mask, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = sdpa_fp32_on_cpu_autocast
    _FP32_ATTENTION_INSTALLED = True
