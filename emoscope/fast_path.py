"""The fast CPU scoring path's thresholds: tuned on a bundle's validation texts, recorded in its manifest.

The fast path (:mod:`emoscope.models.fast_cpu`) gives probabilities a little different from the
path that trained the bundle, so it labels with thresholds of its own: :func:`tune_fast` scores
the bundle's validation texts (``validation.json``) on the fast path, chooses thresholds the way
the recipe's ``[thresholds]`` section asks, and records them in ``manifest.json`` under
``path_thresholds["onnxruntime"]`` with the deviation from the stored validation probabilities
and both paths' validation macro-F1 (``emoscope tune-fast --model DIR``, the one way to add them).
A bundle without them is refused by ``--fast`` with that command as the hint.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from emoscope import bundle as bundle_io
from emoscope.config import ThresholdConfig
from emoscope.errors import BundleError
from emoscope.manifest import Manifest, PathThresholds
from emoscope.metrics import compute_metrics
from emoscope.models import Runtime, load_model
from emoscope.models.fast_cpu import FAST_PATH, fast_model, runtime_version
from emoscope.thresholds import choose_thresholds

TUNE_BATCH_SIZE = 32


def fast_thresholds(folder: str | Path, manifest: Manifest) -> list[float]:
    """The thresholds tuned for the fast path; ``BundleError`` with the command that adds them."""
    record = (manifest.path_thresholds or {}).get(FAST_PATH)
    if record is None:
        raise BundleError(f"{folder} has no thresholds tuned for the fast path; add them with: "
                          f"emoscope tune-fast --model {folder}")
    return list(record.thresholds)


def threshold_config(manifest: Manifest) -> ThresholdConfig:
    """The recipe's ``[thresholds]`` section (defaults for bundles that did not record their recipe)."""
    section = (manifest.config or {}).get("thresholds") or {}
    return ThresholdConfig(**{k: section[k] for k in ("tune", "fallback") if k in section})


def tune_fast(folder: str | Path) -> PathThresholds:
    """Score the bundle's validation texts on the fast path, tune its thresholds there and record
    them in the manifest (replaced atomically; files, card and the bundle's own thresholds stay)."""
    folder = Path(folder)
    manifest = bundle_io.read_manifest(folder)
    validation = bundle_io.read_validation(folder, manifest)
    if validation is None or not validation.texts:
        raise BundleError(f"{folder} holds no validation texts (validation.json) to tune the fast path's thresholds on")
    model = fast_model(load_model(folder, manifest, Runtime(torch.device("cpu"), "fp32", TUNE_BATCH_SIZE)))
    probs = model.predict_proba(validation.texts)
    thresholds = choose_thresholds(threshold_config(manifest), validation.labels, probs, validation.mask)
    mine = compute_metrics(validation.labels, probs, thresholds, label_mask=validation.mask)
    theirs = compute_metrics(validation.labels, validation.probs, np.asarray(manifest.thresholds),
                             label_mask=validation.mask)
    diff = np.abs(probs.astype(np.float64) - validation.probs.astype(np.float64))
    record = PathThresholds(thresholds=[float(t) for t in thresholds], tuned_on="validation", n_texts=len(validation.texts),
                            macro_f1=round(float(mine["macro_f1"]), 6),
                            reference_macro_f1=round(float(theirs["macro_f1"]), 6),
                            max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                            runtime=runtime_version(),
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    bundle_io.update_path_thresholds(folder, FAST_PATH, record)
    return record
