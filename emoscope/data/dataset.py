"""The `Dataset` every reader returns (texts with a multi-hot label matrix), `combine` for
stacking datasets over the union of their labels with a label mask, and `align_labels`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from emoscope.errors import DataError
from emoscope.text import unencodable

if TYPE_CHECKING:
    import pandas as pd

LANGUAGES = ("en", "ar", "hi", "de", "es", "mixed", "unknown")
"""Values of `Dataset.language`; "unknown" is for generic files whose script is neither."""


@dataclass
class Dataset:
    """Texts with a multi-hot label matrix.

    `labels[i, j]` is 1 when text i carries label `label_names[j]`. `label_mask`, when present,
    says which entries were annotated at all (True = annotated): `combine` sets it because a
    label one corpus never annotated is unknown, not absent. `dropped` lists the (line number,
    reason) of file rows the reader skipped. `ids` default to "0", "1", ...
    """

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    language: str
    name: str
    ids: list[str] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)
    label_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        n = len(self.texts)
        if labels.ndim != 2 or labels.shape != (n, len(self.label_names)):
            raise DataError(
                f"dataset {self.name!r}: labels must have shape (texts, label names) = "
                f"({n}, {len(self.label_names)}), got {labels.shape}"
            )
        if not all(isinstance(text, str) for text in self.texts):
            raise DataError(f"dataset {self.name!r}: every text must be a string")
        _check_texts(self.name, self.texts, self.ids)
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise DataError(f"dataset {self.name!r}: labels must be 0 or 1")
        self.labels = labels.astype(np.uint8, copy=False)
        if len(set(self.label_names)) != len(self.label_names):
            raise DataError(f"dataset {self.name!r}: duplicate label names in {self.label_names}")
        if self.language not in LANGUAGES:
            raise DataError(
                f"dataset {self.name!r}: language must be one of {', '.join(LANGUAGES)}, "
                f"got {self.language!r}"
            )
        if not self.ids:
            self.ids = [str(i) for i in range(n)]
        if len(self.ids) != n:
            raise DataError(f"dataset {self.name!r}: {len(self.ids)} ids for {n} texts")
        if self.label_mask is not None:
            mask = np.asarray(self.label_mask, dtype=bool)
            if mask.shape != self.labels.shape:
                raise DataError(
                    f"dataset {self.name!r}: label_mask shape {mask.shape} differs from "
                    f"labels shape {self.labels.shape}"
                )
            self.label_mask = mask

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """Return the rows at `indices` (integer positions or a boolean mask), in that order."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.intp, copy=False)
        return Dataset(
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            label_names=list(self.label_names),
            language=self.language,
            name=self.name,
            ids=[self.ids[i] for i in idx],
            dropped=list(self.dropped),
            label_mask=None if self.label_mask is None else self.label_mask[idx],
        )

    def label_frequencies(self) -> np.ndarray:
        """Number of positive examples of each label (int64, in `label_names` order)."""
        return self.labels.sum(axis=0, dtype=np.int64)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the label names, texts, labels and mask: equal data, equal digest.

        Independent of name, ids and row provenance, so a bundle can record exactly which data
        it was trained on and a later run can check it has the same.
        """
        digest = hashlib.sha256()
        digest.update(json.dumps(self.label_names, ensure_ascii=False).encode("utf-8"))
        for text in self.texts:
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
        digest.update(repr(self.labels.shape).encode("ascii"))
        digest.update(np.ascontiguousarray(self.labels, dtype=np.uint8).tobytes())
        if self.label_mask is not None:
            digest.update(b"mask")
            digest.update(np.packbits(self.label_mask).tobytes())
        return digest.hexdigest()

    def to_frame(self) -> pd.DataFrame:
        """A pandas DataFrame with columns id, text and one column per label.

        Entries that `label_mask` marks as not annotated are missing (pandas NA).
        """
        # pandas is imported here, not at module level, because only display code needs it
        # and it costs a noticeable fraction of a second to import.
        import pandas as pd

        columns: dict[str, Any] = {"id": self.ids, "text": self.texts}
        for j, label in enumerate(self.label_names):
            column = pd.Series(self.labels[:, j], dtype="UInt8")
            columns[label] = (
                column if self.label_mask is None else column.mask(~self.label_mask[:, j])
            )
        return pd.DataFrame(columns)


def _check_texts(name: str, texts: Sequence[str], ids: Sequence[str]) -> None:
    """``DataError`` naming the first text that cannot be encoded (``text.unencodable``): readers
    refuse such files by line, so only texts built in code get here. One search over all texts
    first, so the check costs next to nothing on clean data."""
    if unencodable("".join(texts)) is None:
        return
    i, problem = next((i, p) for i, p in enumerate(map(unencodable, texts)) if p is not None)
    which = f"id {ids[i]!r}" if i < len(ids) else f"row {i}"
    raise DataError(f"dataset {name!r}: the text of {which} holds {problem}")


def align_labels(ds: Dataset, label_names: list[str]) -> Dataset:
    """`ds` with its label columns in `label_names` order; DataError when the sets differ."""
    if ds.label_names == label_names:
        return ds
    if set(ds.label_names) != set(label_names):
        missing = sorted(set(label_names) - set(ds.label_names))
        extra = sorted(set(ds.label_names) - set(label_names))
        raise DataError(
            f"dataset {ds.name!r} has different labels: missing {missing}, extra {extra}; "
            "use a dev set with the training labels, or combine the datasets first"
        )
    order = [ds.label_names.index(name) for name in label_names]
    return Dataset(
        texts=ds.texts,
        labels=ds.labels[:, order],
        label_names=list(label_names),
        language=ds.language,
        name=ds.name,
        ids=ds.ids,
        dropped=ds.dropped,
        label_mask=None if ds.label_mask is None else ds.label_mask[:, order],
    )


def restrict_labels(ds: Dataset, label_names: list[str]) -> Dataset:
    """`ds` over exactly `label_names`: its other labels dropped, and the ones it lacks 0 and
    masked (False in `label_mask`: not annotated, rather than absent). For extra training data
    of one target (`data.extra_train`): it teaches the target's labels it annotates, nothing else."""
    if ds.label_names == label_names:
        return ds
    labels = np.zeros((len(ds), len(label_names)), dtype=np.uint8)
    mask = np.zeros((len(ds), len(label_names)), dtype=bool)
    for j, name in enumerate(label_names):
        if name in ds.label_names:
            k = ds.label_names.index(name)
            labels[:, j] = ds.labels[:, k]
            mask[:, j] = True if ds.label_mask is None else ds.label_mask[:, k]
    return Dataset(texts=ds.texts, labels=labels, label_names=list(label_names), language=ds.language, name=ds.name,
                   ids=ds.ids, dropped=ds.dropped, label_mask=None if mask.all() else mask)


def combine(datasets: Sequence[Dataset]) -> Dataset:
    """Stack datasets over the union of their label names (in order of first appearance).

    A label a dataset does not annotate is 0 in `labels` and False in `label_mask`, so losses
    and metrics can leave it out rather than read it as "absent". The mask is None when every
    dataset annotates every label. Language is "mixed" when the datasets' languages differ.
    """
    if not datasets:
        raise DataError("combine needs at least one dataset")
    label_names: list[str] = []
    for ds in datasets:
        label_names.extend(name for name in ds.label_names if name not in label_names)
    blocks, masks = [], []
    for ds in datasets:
        labels = np.zeros((len(ds), len(label_names)), dtype=np.uint8)
        mask = np.zeros((len(ds), len(label_names)), dtype=bool)
        columns = [label_names.index(name) for name in ds.label_names]
        labels[:, columns] = ds.labels
        mask[:, columns] = True if ds.label_mask is None else ds.label_mask
        blocks.append(labels)
        masks.append(mask)
    mask = np.concatenate(masks)
    languages = {ds.language for ds in datasets}
    return Dataset(
        texts=[text for ds in datasets for text in ds.texts],
        labels=np.concatenate(blocks),
        label_names=label_names,
        language=languages.pop() if len(languages) == 1 else "mixed",
        name="+".join(ds.name for ds in datasets),
        ids=[row_id for ds in datasets for row_id in ds.ids],
        dropped=[(line, f"{ds.name}: {reason}") for ds in datasets for line, reason in ds.dropped],
        label_mask=None if mask.all() else mask,
    )
