"""``Predictor``: load a bundle once, then predict texts, batches and whole files.

The model is loaded in eval mode and never mutated, so one Predictor can be shared by
many callers (the app keeps one per process). Texts are batched in token-length order to
keep padding small, and files are streamed in chunks so memory stays bounded whatever the
file size (reading, checking and writing the files is :mod:`emoscope.rowfiles`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoscope import bundle as bundle_io
from emoscope import rowfiles
from emoscope.errors import InputError
from emoscope.fast_path import fast_thresholds
from emoscope.fsutil import atomic_file
from emoscope.models import EmotionModel, Runtime, load_model, pick_device
from emoscope.models.fast_cpu import fast_model
from emoscope.rowfiles import file_columns
from emoscope.text import MAX_CHARS, check_text, detect_language, truncate
from emoscope.thresholds import apply_thresholds

__all__ = ["Prediction", "Predictor", "file_columns"]


@dataclass
class Prediction:
    """One text's result: probability per label and the labels at or above their thresholds."""

    text: str
    probabilities: dict[str, float]
    labels: list[str]
    language: str
    truncated: bool = False


class Predictor:
    """A loaded bundle ready to predict. ``device='auto'`` uses CUDA when present. ``fast``: score on
    the fast CPU path (:mod:`emoscope.models.fast_cpu`) with the thresholds tuned for it
    (:mod:`emoscope.fast_path`); such a Predictor scores texts and files, it does not explain."""

    def __init__(self, bundle: str | Path, device: str = "auto", batch_size: int = 32, verify: bool = True,
                 fast: bool = False):
        self.path = Path(bundle)
        self.manifest = bundle_io.read_manifest(self.path, verify=verify)
        self.labels: list[str] = list(self.manifest.labels)
        self.fast = fast
        self.thresholds = np.asarray(fast_thresholds(self.path, self.manifest) if fast else self.manifest.thresholds,
                                     dtype=np.float32)
        device = "cpu" if fast and device == "auto" else device
        # Predict in the precision the bundle's thresholds were tuned in: a bundle trained in fp32
        # (on a CPU, or before bundles recorded it) stays fp32 on a GPU too; one trained in bf16 on
        # a GPU uses bf16 where the device has it (None = the device's default), fp32 elsewhere.
        precision = None if self.manifest.precision == "bf16" else "fp32"
        self.model: EmotionModel = load_model(self.path, self.manifest, Runtime(pick_device(device), precision, batch_size))
        if fast:
            self.model = fast_model(self.model)

    @property
    def name(self) -> str:
        return self.manifest.name or self.path.name

    @property
    def device(self):
        return self.model.runtime.device

    @property
    def precision(self) -> str | None:
        return self.model.runtime.precision

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities [n, L] for non-empty texts (empty ones, and text that cannot be encoded,
        raise ``InputError``)."""
        prepared = [self._prepare(t, i)[0] for i, t in enumerate(texts)]
        return self._probs(prepared)

    def _prepare(self, text: Any, index: int) -> tuple[str, bool]:
        if not isinstance(text, str):
            raise InputError(f"text {index} is {type(text).__name__}, not a string")
        if not text.strip():
            raise InputError("the text is empty" if index == 0 else f"text {index} is empty")
        check_text(text, "the text" if index == 0 else f"text {index}")
        cut, was_cut = truncate(text, MAX_CHARS)
        if was_cut:
            warnings.warn(f"text {index} has {len(text):,} characters; only the first {len(cut):,} are used "
                          f"(the model reads at most {self.model.max_length} tokens anyway)", stacklevel=3)
        return cut, was_cut

    def _probs(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.model.predict_proba(texts)

    def predict(self, texts: Sequence[str], thresholds: Sequence[float] | None = None) -> list[Prediction]:
        """Labels and probabilities per text, under the bundle's thresholds unless others are given."""
        prepared = [self._prepare(t, i) for i, t in enumerate(texts)]
        limits = self._limits(thresholds)
        probs = self._probs([p[0] for p in prepared])
        predicted = apply_thresholds(probs, limits)
        return [
            Prediction(text=text, probabilities=dict(zip(self.labels, map(float, row))),
                       labels=[lab for lab, on in zip(self.labels, flags) if on], language=detect_language(text),
                       truncated=cut)
            for (text, cut), row, flags in zip(prepared, probs, predicted)
        ]

    def predict_file(self, input_path: str | Path, output_path: str | Path, text_column: str = "text",
                     chunk_size: int = 512, progress: bool = False,
                     on_progress: Callable[[int], None] | None = None,
                     thresholds: Sequence[float] | None = None,
                     shard: tuple[int, int] | None = None) -> dict[str, int]:
        """Stream a CSV/TSV/JSONL file through the model into a file of the same or another format.

        The output keeps every input column (a JSONL file's keys from every row) and adds
        ``prob_<label>`` and ``<label>`` (0/1) per label. Rows with an empty text keep empty
        prediction cells and are counted. Every row is checked before the model reads any
        (:mod:`emoscope.rowfiles`); the output appears whole or not at all, and never replaces
        the input. Returns counts: rows, predicted, empty. ``on_progress(rows_done)`` is called
        after each chunk. The 0/1 columns use the bundle's thresholds unless others are given.
        ``shard = (i, n)``: only chunks i, i + n, i + 2n… are scored and written (one process's
        part of a file scored by n, which :mod:`emoscope.sharded` merges).
        """
        input_path, output_path = Path(input_path), Path(output_path)
        rowfiles.check_job(input_path, output_path, chunk_size)
        limits = self._limits(thresholds)
        found = rowfiles.scan(input_path, text_column)
        added = self.added_columns()
        _warn_about(input_path, found, added)
        stats = {"rows": 0, "predicted": 0, "empty": 0}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=found.rows, unit="row", desc="predict")
        columns = self.output_columns(found.columns)
        try:
            with atomic_file(output_path) as tmp, rowfiles.RowWriter(tmp, rowfiles.format_of(output_path),
                                                                     columns) as writer:
                for c, chunk in enumerate(rowfiles.chunks(rowfiles.read_rows(input_path, text_column), chunk_size)):
                    if shard is None or c % shard[1] == shard[0]:
                        self._predict_chunk(chunk, limits, writer, stats)
                    if bar is not None:
                        bar.update(len(chunk))
                    if on_progress is not None:
                        on_progress(stats["rows"])
        finally:
            if bar is not None:
                bar.close()
        return stats

    def added_columns(self) -> list[str]:
        """The columns a scored file gains: ``prob_<label>`` and ``<label>`` per label."""
        return [c for label in self.labels for c in (f"prob_{label}", label)]

    def output_columns(self, input_columns: Sequence[str]) -> list[str]:
        """A scored file's columns: the input's, then the added ones it does not already have."""
        return list(input_columns) + [c for c in self.added_columns() if c not in input_columns]

    def _predict_chunk(self, chunk: list[rowfiles.Row], limits: np.ndarray, writer: rowfiles.RowWriter,
                       stats: dict[str, int]) -> None:
        keep = [i for i, (_, _, text) in enumerate(chunk) if text is not None]
        probs = self._probs([truncate(chunk[i][2], MAX_CHARS)[0] for i in keep])
        flags = apply_thresholds(probs, limits)
        filled = dict(zip(keep, range(len(keep))))
        for i, (_, row, _) in enumerate(chunk):
            out = dict(row)
            j = filled.get(i)
            for k, label in enumerate(self.labels):
                out[f"prob_{label}"] = round(float(probs[j, k]), 6) if j is not None else None
                out[label] = int(flags[j, k]) if j is not None else None
            writer.write(out)
        stats["rows"] += len(chunk)
        stats["predicted"] += len(keep)
        stats["empty"] += len(chunk) - len(keep)

    def _limits(self, thresholds: Sequence[float] | None) -> np.ndarray:
        """The thresholds to label with: the bundle's, or one per label in [0, 1] (``InputError``)."""
        if thresholds is None:
            return self.thresholds
        limits = np.asarray(thresholds, dtype=np.float32).reshape(-1)
        if len(limits) != len(self.labels) or not np.all((limits >= 0) & (limits <= 1)):
            raise InputError(f"give one threshold in [0, 1] per label ({len(self.labels)}: {', '.join(self.labels)}); "
                             f"got {len(limits)}")
        return limits


def _warn_about(path: Path, found: rowfiles.Scan, added: list[str]) -> None:
    """Warn (once per file) about texts that will be cut and input columns the predictions replace."""
    if found.long:
        lines = ", ".join(map(str, found.long[:5])) + (", ..." if len(found.long) > 5 else "")
        warnings.warn(f"{path}: {len(found.long)} text(s) have more than {MAX_CHARS:,} characters; only the first "
                      f"{MAX_CHARS:,} of each are read (lines {lines})", stacklevel=3)
    replaced = [c for c in added if c in found.columns]
    if replaced:
        warnings.warn(f"{path}: the input column(s) {', '.join(replaced)} are replaced in the output by the "
                      "predictions of the same name", stacklevel=3)
