"""Splitting datasets: iterative stratified splitting of a label matrix, `split_dataset`, and
`train_dev`, which loads a (train, dev) pair, holding out a stratified 20% when dev is absent.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from emoscope.data.dataset import Dataset, align_labels
from emoscope.data.specs import _is_spec, _spec_path, load_dataset
from emoscope.errors import ConfigError, DataError

def iterative_stratified_split(
    labels: np.ndarray, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (train indices, test indices), keeping label proportions on both sides.

    Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011): repeatedly take the label
    with the fewest unassigned examples and deal its examples to the side that most wants that
    label, breaking ties by the side that wants most examples, then at random. Two changes
    for small data: a label with at least 2 positives wants at least one on each side, and a
    final pass moves an example when a side still lacks such a label (or has no rows at all).
    Deterministic for a seed; both index arrays are sorted.
    """
    y = np.asarray(labels).astype(bool)
    if y.ndim != 2:
        raise DataError(f"labels must be a 2-D matrix [rows, labels], got shape {y.shape}")
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be between 0 and 1, got {test_size}")
    n = y.shape[0]
    if n < 2:
        raise DataError(f"cannot split {n} row(s); need at least 2")
    rng = np.random.default_rng(seed)
    n_test = min(n - 1, max(1, round(n * test_size)))
    wanted_rows = np.array([n - n_test, n_test], dtype=float)
    counts = y.sum(axis=0)
    wanted_test = np.where(
        counts >= 2, np.clip(counts * test_size, 1, np.maximum(counts - 1, 1)), counts * test_size
    )
    wanted = np.stack([counts - wanted_test, wanted_test]).astype(float)

    side = np.full(n, -1)
    unassigned = np.ones(n, dtype=bool)
    while unassigned.any():
        remaining = y[unassigned].sum(axis=0)
        if remaining.any():
            rarest = np.flatnonzero(remaining == remaining[remaining > 0].min())
            label: int | None = int(rng.choice(rarest))
            rows = np.flatnonzero(unassigned & y[:, label])
        else:
            label = None
            rows = np.flatnonzero(unassigned)
        for i in rng.permutation(rows):
            choice = np.array([0, 1])
            if label is not None:
                choice = choice[wanted[choice, label] == wanted[choice, label].max()]
            if len(choice) > 1:
                choice = choice[wanted_rows[choice] == wanted_rows[choice].max()]
            s = int(choice[0]) if len(choice) == 1 else int(rng.choice(choice))
            side[i] = s
            unassigned[i] = False
            wanted[s, y[i]] -= 1
            wanted_rows[s] -= 1

    _repair(y, side, counts, rng)
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def _repair(y: np.ndarray, side: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> None:
    """Move rows so each side has a row and every label with >= 2 positives appears on both."""
    for s in (0, 1):
        if not (side == s).any():
            side[rng.choice(np.flatnonzero(side != s))] = s
    shared = counts >= 2
    for label in np.flatnonzero(shared):
        for s in (0, 1):
            if y[side == s, label].any():
                continue
            other = 1 - s
            other_counts = y[side == other].sum(axis=0)
            for i in rng.permutation(np.flatnonzero((side == other) & y[:, label])):
                # Moving row i must not take the last example of another label off its side,
                # nor the last row.
                needed = y[i] & shared & (other_counts <= 1)
                if not needed.any() and (side == other).sum() > 1:
                    side[i] = s
                    break


def split_dataset(ds: Dataset, test_size: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split `ds` into (train, dev) with `iterative_stratified_split`."""
    train_idx, dev_idx = iterative_stratified_split(ds.labels, test_size=test_size, seed=seed)
    train, dev = ds.subset(train_idx), ds.subset(dev_idx)
    percent = round(100 * test_size)
    train.name = f"{ds.name}[train {100 - percent}% seed={seed}]"
    dev.name = f"{ds.name}[dev {percent}% seed={seed}]"
    return train, dev


def train_dev(
    train_spec: str,
    dev_spec: str | None = None,
    data_root: Path | str | None = None,
    seed: int = 0,
    **kw: Any,
) -> tuple[Dataset, Dataset]:
    """Load (train, dev) for training.

    Without `dev_spec`, or when `dev_spec` names a corpus split whose file is absent (with a
    warning), dev is a stratified 20% of train. The dev labels are put in train's order; a dev
    set with other labels is a DataError. `kw` goes to `load_dataset`.
    """
    train = load_dataset(train_spec, data_root=data_root, **kw)
    if dev_spec is not None and _is_spec(dev_spec):
        _, dev_path, _ = _spec_path(dev_spec, data_root)
        if not dev_path.is_file():
            warnings.warn(
                f"dev set {dev_spec!r} not found ({dev_path}); using a stratified 20% of "
                f"{train_spec!r} as dev instead",
                stacklevel=2,
            )
            dev_spec = None
    if dev_spec is None:
        return split_dataset(train, test_size=0.2, seed=seed)
    dev = load_dataset(dev_spec, data_root=data_root, **kw)
    return train, align_labels(dev, train.label_names)
