"""The fast CPU scoring path: each encoder of a loaded model run by ONNX Runtime, same weights, fp32.

Opt-in (``emoscope predict --fast``, ``emoscope evaluate --fast``, the Batch page's option) and for
scoring only: no gradients, no attention weights, CPU only. :func:`fast_model` swaps every base
encoder of a loaded :class:`~emoscope.models.base.EmotionModel` for an :class:`OrtEncoder`; the
word pooling, the stage-1 heads and the meta-learner stay the model's own torch code, so the model
answers ``predict_proba`` as before. Measured against the candidates (int8 dynamic quantisation in
torch or ONNX Runtime, thread settings) in ``benchmarks/fast_cpu.py`` and ``docs/BENCHMARKS.md``:
fp32 under ONNX Runtime scored the ``default`` bundle 2.2x as fast as the torch fp32 path on the
busy 2-core CPU, with probabilities within ~1e-5 of it; int8 was faster still but moved
probabilities by up to 0.2-0.5, more than thresholds tuned to two decimals survive.

Each encoder is exported once with ``torch.onnx.export`` (the torch.export-based exporter),
from its input embeddings (the word-embedding lookup stays in torch, so the 250k-row vocabulary
of me5 is not copied into the export), into ``<cache>/onnx/`` under a key made of its weights'
fingerprint and the exporter's versions; later loads reuse the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from emoscope.encoders import cache_dir
from emoscope.errors import ConfigError
from emoscope.fsutil import atomic_file
from emoscope.models.base import EmotionModel
from emoscope.models.fingerprint import weights_fingerprint

FAST_PATH = "onnxruntime"
"""The name the manifest records the fast path's thresholds under (``Manifest.path_thresholds``)."""
EXPORT_VERSION = 1
"""Bumped when the exported graph changes (inputs, wrapper): old cached exports are then not reused."""
_EXPORT_LOCK = threading.Lock()


@dataclass
class EncoderOutput:
    """What the model's forward reads from an encoder call."""

    last_hidden_state: torch.Tensor


class _FromEmbeddings(nn.Module):
    """The encoder from its input embeddings: what is exported."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


class OrtEncoder(nn.Module):
    """An encoder answering ``encoder(input_ids=…, attention_mask=…).last_hidden_state`` from an
    ONNX Runtime session; the word embeddings are looked up in torch first."""

    def __init__(self, embeddings: nn.Module, session, config):
        super().__init__()
        self.embeddings = embeddings
        self.session = session
        self.config = config

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, **_: object) -> EncoderOutput:
        if inputs_embeds is not None or input_ids is None:
            raise ConfigError("the fast CPU path scores token ids only; explanations use the fp32 model")
        with torch.inference_mode():
            embeds = self.embeddings(input_ids).float().contiguous().numpy()
        mask = attention_mask.to(torch.long).contiguous().numpy()
        hidden = self.session.run(None, {"embeds": embeds, "mask": mask})[0]
        return EncoderOutput(torch.from_numpy(hidden))


def fast_model(model: EmotionModel, threads: int | None = None, cache: Path | None = None) -> EmotionModel:
    """``model`` (loaded, on the CPU) with every base encoder run by ONNX Runtime, in place.

    ``threads``: ONNX Runtime's intra-op threads (default: torch's). The model then scores texts
    only (``predict_proba``); load another copy for explanations."""
    if model.runtime.device.type != "cpu":
        raise ConfigError(f"the fast path runs on the CPU; this model is on {model.runtime.device} "
                          "(leave out --fast on a GPU, or pass --device cpu)")
    threads = threads or torch.get_num_threads()
    folder = (cache or cache_dir()) / "onnx"
    for encoder in model.encoders:
        fast = OrtEncoder(encoder.get_input_embeddings(), ort_session(export_encoder(encoder, folder), threads),
                          encoder.config)
        replace_module(model, encoder, fast)
    return model


def replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` where ``old`` sits in ``root`` (a ModuleList entry or an attribute)."""
    for name, module in list(root.named_modules()):
        for child_name, child in list(module.named_children()):
            if child is old:
                setattr(module, child_name, new)
                return
    raise ValueError(f"{type(old).__name__} is not a submodule of this model")  # pragma: no cover - a bug


def export_key(encoder: nn.Module) -> str:
    """The cache key of an encoder's export: its weights and the exporter's versions."""
    versions = [_version(name) for name in ("torch", "onnxscript", "onnx", "transformers")]
    raw = f"{weights_fingerprint(encoder)}|{'|'.join(versions)}|{EXPORT_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def export_encoder(encoder: nn.Module, folder: Path) -> Path:
    """The ONNX file of ``encoder`` (from input embeddings) in ``folder``, exported if missing."""
    target = folder / f"{export_key(encoder)}.onnx"
    with _EXPORT_LOCK:
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        hidden = encoder.config.hidden_size
        # 3 x 8: sizes other than 0 and 1 (which torch.export would fix) and unequal (or it ties the two axes).
        example = (torch.randn(3, 8, hidden), torch.ones(3, 8, dtype=torch.long))
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
        with warnings.catch_warnings(), _quiet_logger("torch.onnx"):
            warnings.simplefilter("ignore")  # the exporter's deprecation and axis-naming notes
            program = torch.onnx.export(_FromEmbeddings(encoder).eval(), example, input_names=["embeds", "mask"],
                                        output_names=["hidden"], dynamo=True, optimize=True, verbose=False,
                                        dynamic_shapes={"embeds": {0: batch, 1: seq}, "mask": {0: batch, 1: seq}})
        with atomic_file(target) as tmp:
            program.save(str(tmp))
        return target


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Only errors from logger ``name`` (the exporter logs a warning per torchvision op it skips)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort  # a heavy import, only for the fast path

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _version(name: str) -> str:
    try:
        return f"{name}={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name}=none"


def runtime_version() -> str:
    """The ONNX Runtime that runs the fast path, as recorded beside its thresholds."""
    return _version("onnxruntime")
