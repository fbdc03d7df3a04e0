"""Where and how a loaded model runs: device, precision, batch size, and the one batched loop.

A model owns its :class:`Runtime` (set by whoever loads it: ``Predictor``, training), so callers
predict with ``model.predict_proba(texts)`` and never pass a device around. Precision rules:

* ``None`` (the device's default): bf16 autocast on GPUs with native bf16, fp32 everywhere else,
  so CPU results are exactly fp32. Training and bf16-trained bundles use it.
* ``"fp32"`` / ``"bf16"``: forced. ``"auto"`` (explanations, which run the model hundreds of
  times): bf16 also on CPUs with AMX tiles, where bf16 matrix products are several times faster.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from emoscope.errors import ConfigError, InputError

PRECISIONS = ("auto", "bf16", "fp32")
EVAL_BATCH_SIZE = 256
"""Batch size of inference over cached word vectors (no encoder: memory is small)."""


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present and asked for (``auto``), else CPU. A device this machine lacks (no CUDA,
    or a GPU index past the last one) or a malformed name is a ``ConfigError``, not a crash later."""
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


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto`` → ``bf16`` on a bf16 CUDA GPU or an AMX CPU, else ``fp32``; others as given."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return default_precision(device)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return "bf16" if device.type == "cpu" and amx is not None and amx() else "fp32"


def autocast_context(device: torch.device, precision: str | None = None):
    """The autocast context for running a model on ``device`` in ``precision`` (see the module doc)."""
    if precision is None:
        precision = default_precision(device)
    if resolve_precision(device, precision) == "bf16":
        if device.type == "cpu":
            _install_cpu_fp32_attention()
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@dataclass
class Runtime:
    """Device, precision (``None`` = the device's default) and batch size of a loaded model."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str | None = None
    batch_size: int = 32

    def autocast(self, precision: str | None = None):
        """Autocast in ``precision``, or in this runtime's own precision when None."""
        return autocast_context(self.device, self.precision if precision is None else precision)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb(device: torch.device) -> dict[str, float]:
    """``{"peak_gpu_mb": …}``, the most GPU memory torch allocated in this process, on a GPU; ``{}`` on CPU
    (RSS counts only host memory, so a GPU run's model and activations would not show in it)."""
    if device.type != "cuda":
        return {}
    return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)}


def length_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Indices in ascending length order (stable), ``batch_size`` at a time: each batch pads
    only to its own longest item. The one batching loop of every inference path."""
    order = np.argsort(np.asarray(lengths), stable=True)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def batched_probs(lengths: Sequence[int] | np.ndarray, batch_size: int, n_labels: int,
                  logits_of: Callable[[np.ndarray], torch.Tensor]) -> np.ndarray:
    """Sigmoid probabilities ``[n, n_labels]`` in input order; ``logits_of(indices)`` scores one batch."""
    out = np.zeros((len(lengths), n_labels), dtype=np.float32)
    for idx in length_batches(lengths, batch_size):
        out[idx] = torch.sigmoid(logits_of(idx).float()).cpu().numpy()
    return out


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
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # a heavy import, only when bf16 is used

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def sdpa_fp32_on_cpu_autocast(module, query, key, value, attention_mask, *args, **kwargs):
        if query.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                mask = attention_mask.float() if attention_mask is not None and attention_mask.is_floating_point() else attention_mask
                return original(module, query.float(), key.float(), value.float(), mask, *args, **kwargs)
        return original(module, query, key, value, attention_mask, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = sdpa_fp32_on_cpu_autocast
    _FP32_ATTENTION_INSTALLED = True
