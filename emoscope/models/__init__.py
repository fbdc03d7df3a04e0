"""The models EmoScope trains and predicts with, behind one interface (:class:`EmotionModel`).

``base`` (the interface), ``runtime`` (device, precision, batching), ``classifier`` (one encoder
with a pooled head), ``meta`` (the stack's Bi-LSTM meta-learner), ``stacked`` (K encoders read by
the meta-learner), ``fingerprint`` (weights fingerprints). :func:`load_model` is the one place
that looks at a bundle's model kind.
"""

from __future__ import annotations

from pathlib import Path

from emoscope.errors import BundleError
from emoscope.manifest import Manifest
from emoscope.models.base import EmotionModel
from emoscope.models.classifier import EncoderClassifier, pool_tokens
from emoscope.models.runtime import Runtime, autocast_context, default_precision, pick_device, resolve_precision
from emoscope.models.stacked import StackedModel

MODEL_KINDS: dict[str, type[EmotionModel]] = {cls.kind: cls for cls in (EncoderClassifier, StackedModel)}


def load_model(folder: Path, manifest: Manifest, runtime: Runtime) -> EmotionModel:
    """The model of the bundle in ``folder``, in eval mode, placed on ``runtime``."""
    cls = MODEL_KINDS.get(manifest.model.kind)
    if cls is None:
        raise BundleError(f"{folder}: model kind {manifest.model.kind!r} is not supported by this EmoScope version")
    return cls.from_bundle(folder, manifest).place(runtime)


__all__ = ["EmotionModel", "EncoderClassifier", "MODEL_KINDS", "Runtime", "StackedModel", "autocast_context",
           "default_precision", "load_model", "pick_device", "pool_tokens", "resolve_precision"]
