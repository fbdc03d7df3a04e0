"""Training: a recipe in, a bundle out.

:func:`train` dispatches by recipe kind: a single-encoder recipe to
:func:`emoscope.training.classifier.train_classifier`, a stacked one (with a ``[stack]`` section)
to :func:`emoscope.training.stack.pipeline.train_stack`. The modules:

* ``run`` — what every run does around its model: refuse to overwrite, load and check the data,
  record the run's cost;
* ``loop`` — the loop pieces both kinds share: seeding, length-bucketed batches, rare-label
  sampling, the optimiser and schedule, one epoch, early stopping;
* ``classifier`` — fine-tuning one encoder with a head (``fit_classifier``) and the
  single-encoder pipeline;
* ``stack/`` — the stacked ensemble by stage: ``stage1`` (fine-tuning, folds, the work folder),
  ``embeddings`` (ragged rows, the cache and its keys), ``leakage`` (the gate), ``stage2``
  (reading every split with the stage-1 models), ``stage3`` (the meta-learner), ``pipeline``;
* ``ablate`` — ``emoscope ablate``, every variant of a stacked recipe from one stage 2.
"""

from __future__ import annotations

from pathlib import Path

from emoscope.config import RunConfig
from emoscope.errors import InputError
from emoscope.training.classifier import train_classifier
from emoscope.training.run import Logger
from emoscope.training.stack.pipeline import train_stack

__all__ = ["train", "train_classifier", "train_stack"]


def train(config: RunConfig, output: str | Path, *, overwrite: bool = False, progress: bool = True,
          log: Logger = print, work: Path | None = None) -> Path:
    """Run a recipe end to end and write its bundle to ``output``; returns the bundle's path.

    ``work`` (stacked recipes only) replaces the recipe's stage-1 work folder."""
    if config.kind == "stacked":
        return train_stack(config, output, overwrite=overwrite, progress=progress, log=log, work=work)
    if work is not None:
        raise InputError("--work-dir is for stacked recipes (it keeps their stage-1 models)")
    return train_classifier(config, output, overwrite=overwrite, progress=progress, log=log)
