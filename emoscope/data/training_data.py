"""The data a recipe trains on: train / validation / eval sets loaded from its `[data]` section,
each optionally cut to a seeded, label-stratified subset, and the summary a bundle records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emoscope.data.dataset import Dataset, align_labels, combine, restrict_labels
from emoscope.data.specs import load_dataset
from emoscope.data.split import iterative_stratified_split, split_dataset

if TYPE_CHECKING:
    from emoscope.config import RunConfig


@dataclass
class TrainingData:
    """The sets one training run reads, and the languages of its training datasets."""

    train: Dataset
    validation: Dataset
    eval: Dataset | None
    languages: list[str]
    own_train: Dataset | None = None  # with data.extra_train: the training set before the extra data joined it


def data_summary(data: TrainingData) -> dict[str, Any]:
    """What a bundle's manifest records of its data: names, sizes, the training fingerprint."""
    return {"train": data.train.name, "n_train": len(data.train), "train_fingerprint": data.train.fingerprint(),
            "validation": data.validation.name, "n_validation": len(data.validation),
            "eval": data.eval.name if data.eval else None}


def stratified_subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded, label-stratified subset of ``n`` examples (all of them when n is None or larger)."""
    if n is None or n >= len(ds):
        return ds
    _, keep = iterative_stratified_split(ds.labels, test_size=n / len(ds), seed=seed)
    return ds.subset(sorted(keep))


def load_specs(specs: str | Sequence[str], data_root: str | None) -> tuple[Dataset, list[str]]:
    """One dataset, or several combined over the union of their labels (with a label mask);
    also returns the languages of the parts."""
    parts = [load_dataset(spec, data_root=data_root) for spec in ((specs,) if isinstance(specs, str) else specs)]
    return (parts[0] if len(parts) == 1 else combine(parts)), sorted({p.language for p in parts})


def load_training_data(config: RunConfig) -> TrainingData:
    """Train / validation / eval sets as the recipe describes them (``extra_train`` joins the
    training set after the hold-out and the ``max_train`` cut, over the training labels)."""
    d = config.data
    seed = config.training.seed
    train, languages = load_specs(d.train, d.data_root)
    if d.holdout_fraction is not None:
        train, validation = split_dataset(train, test_size=d.holdout_fraction, seed=seed)
    else:
        validation = align_labels(load_specs(d.validation, d.data_root)[0], train.label_names)
    evaluation = align_labels(load_specs(d.eval, d.data_root)[0], train.label_names) if d.eval else None
    own = train = stratified_subset(train, d.max_train, seed)
    if d.extra_train:
        extra, extra_languages = load_specs(d.extra_train, d.data_root)
        train = combine([train, restrict_labels(extra, train.label_names)])
        languages = sorted({*languages, *extra_languages})
    return TrainingData(
        train=train,
        validation=stratified_subset(validation, d.max_validation, seed),
        eval=stratified_subset(evaluation, d.max_eval, seed) if evaluation is not None else None,
        languages=languages,
        own_train=own if d.extra_train else None,
    )
