"""What every training run does around its model, whatever the recipe kind: refuse to replace an
existing bundle unasked, load the recipe's data (through :mod:`emoscope.data`) and check that
validation can drive early stopping and thresholds, describe the run's plan for its progress
report, and record what the run cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from emoscope.config import RunConfig
from emoscope.data import Dataset, TrainingData, load_training_data
from emoscope.errors import ConfigError, DataError
from emoscope.fsutil import lock_output, release_output
from emoscope.manifest import FORMAT
from emoscope.models import default_precision
from emoscope.models.runtime import peak_gpu_mb, peak_rss_mb

Logger = Callable[[str], None]


def refuse_existing(output: str | Path, overwrite: bool) -> Path:
    """``output`` as a path, locked for this run (``fsutil.lock_output``: a second run into it is
    refused until the bundle is saved or the process ends); ``ConfigError`` when another run holds
    it, when it exists and ``overwrite`` is off, or when it is anything but a bundle (``overwrite``
    replaces only an EmoScope bundle, or an empty or unfinished one)."""
    output = Path(output)
    lock_output(output)
    try:
        if output.exists() and not overwrite:
            raise ConfigError(f"{output} already exists; choose another --output or pass --overwrite")
        problem = _not_a_bundle(output) if output.exists() else None
        if problem:
            raise ConfigError(f"--overwrite replaces only an EmoScope bundle, and {output} {problem}; nothing was "
                              "deleted: choose another --output")
    except ConfigError:
        release_output(output)
        raise
    return output


def _not_a_bundle(path: Path) -> str | None:
    """Why ``path`` is not a bundle that ``--overwrite`` may replace, or None: a folder whose
    manifest.json is EmoScope's, an empty folder, or an unfinished ``.NAME.partial-…`` one."""
    if path.is_symlink() or not path.is_dir():
        return "is not a folder" if not path.is_symlink() else "is a symbolic link"
    if not any(path.iterdir()) or (path.name.startswith(".") and ".partial-" in path.name):
        return None
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "has no manifest.json"
    except (OSError, ValueError):
        return "has a manifest.json that is not an EmoScope manifest"
    return None if isinstance(manifest, dict) and manifest.get("format") == FORMAT else \
        "has a manifest.json that is not an EmoScope manifest"


def require_positive_labels(validation: Dataset) -> None:
    """Early stopping and threshold tuning read validation F1: a validation set without a single
    positive label cannot drive them (``DataError``)."""
    if validation.labels.sum() == 0:
        raise DataError(f"the validation set {validation.name} has no positive labels; early stopping and "
                        "thresholds need some")


def load_run_data(config: RunConfig, log: Logger | None = None) -> TrainingData:
    """The recipe's train / validation / eval sets, checked (:func:`require_positive_labels`) and,
    with ``log``, described in one ``[data]`` line."""
    data = load_training_data(config)
    train_ds, val_ds = data.train, data.validation
    if log is not None:
        log(f"[data] train {len(train_ds)} ({train_ds.name}), validation {len(val_ds)} ({val_ds.name})"
            + (f", eval {len(data.eval)} ({data.eval.name})" if data.eval else "")
            + f"; labels: {', '.join(train_ds.label_names)}")
    require_positive_labels(val_ds)
    return data


def run_plan(config: RunConfig, data: TrainingData) -> dict[str, Any]:
    """The work a run will do, for the ``plan`` progress event (and so the ETA): the texts, the
    stage-1 fits with their training texts (a fold model's count is the expected one), the texts
    stage 2 reads per encoder, the meta-learner's epochs."""
    n_train, n_val = len(data.train), len(data.validation)
    n_eval = len(data.eval) if data.eval is not None else 0
    plan: dict[str, Any] = {
        "kind": config.kind, "name": config.name, "labels": data.train.label_names,
        "texts": {"train": n_train, "validation": n_val, "eval": n_eval},
        "epochs": config.training.epochs, "batch_size": config.training.batch_size,
        "encoders": [{"name": e.label, "source": e.source, "fine_tune": e.fine_tune} for e in config.encoders]}
    if config.stack is None:
        return {**plan, "stages": ["fine-tune"], "models": [{"encoder": config.encoder.label, "role": "full",
                                                             "texts": n_train}]}
    k = config.stack.folds if config.stack.folds > 1 else 0
    models, embed = [], {}
    for enc in config.encoders:
        out_of_fold = enc.fine_tune and k > 0
        embed[enc.label] = n_train * (2 if out_of_fold else 1) + n_val + n_eval  # + the naive read of train
        if enc.fine_tune:
            models.append({"encoder": enc.label, "role": "full", "texts": n_train})
            models += [{"encoder": enc.label, "role": f"fold-{f + 1}", "texts": n_train - n_train // k} for f in range(k)]
    return {**plan, "stages": ["fine-tune", "embed", "meta"], "folds": k, "models": models, "embed": embed,
            "meta_epochs": config.meta.epochs * config.meta.ensemble, "meta_batch_size": config.meta.batch_size}


def run_cost(device: torch.device) -> dict[str, Any]:
    """The manifest's record of where a run ran and its peak memory so far."""
    return {"peak_rss_mb": round(peak_rss_mb(), 1), **peak_gpu_mb(device), "device": str(device),
            "precision": default_precision(device), "torch_threads": torch.get_num_threads()}
