"""What every training run does around its model, whatever the recipe kind: refuse to replace an
existing bundle unasked, load the recipe's data (through :mod:`emoscope.data`) and check that
validation can drive early stopping and thresholds, and record what the run cost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from emoscope.config import RunConfig
from emoscope.data import Dataset, TrainingData, load_training_data
from emoscope.errors import ConfigError, DataError
from emoscope.models import default_precision
from emoscope.models.runtime import peak_gpu_mb, peak_rss_mb

Logger = Callable[[str], None]


def refuse_existing(output: str | Path, overwrite: bool) -> Path:
    """``output`` as a path; ``ConfigError`` when it exists and ``overwrite`` is off."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} already exists; choose another --output or pass --overwrite")
    return output


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


def run_cost(device: torch.device) -> dict[str, Any]:
    """The manifest's record of where a run ran and its peak memory so far."""
    return {"peak_rss_mb": round(peak_rss_mb(), 1), **peak_gpu_mb(device), "device": str(device),
            "precision": default_precision(device), "torch_threads": torch.get_num_threads()}
