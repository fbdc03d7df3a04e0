"""``Predictor``: load a bundle once, then predict texts, batches and whole files.

The model is loaded in eval mode and never mutated, so one Predictor can be shared by
many callers (the app keeps one per process). Texts are batched in token-length order to
keep padding small, and files are streamed in chunks so memory stays bounded whatever the
file size.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoscope import bundle as bundle_io
from emoscope.errors import InputError
from emoscope.models import EmotionModel, Runtime, load_model, pick_device
from emoscope.text import MAX_CHARS, detect_language, truncate
from emoscope.thresholds import apply_thresholds


@dataclass
class Prediction:
    """One text's result: probability per label and the labels at or above their thresholds."""

    text: str
    probabilities: dict[str, float]
    labels: list[str]
    language: str
    truncated: bool = False


class Predictor:
    """A loaded bundle ready to predict. ``device='auto'`` uses CUDA when present."""

    def __init__(self, bundle: str | Path, device: str = "auto", batch_size: int = 32, verify: bool = True):
        self.path = Path(bundle)
        self.manifest = bundle_io.read_manifest(self.path, verify=verify)
        self.labels: list[str] = list(self.manifest.labels)
        self.thresholds = np.asarray(self.manifest.thresholds, dtype=np.float32)
        # Predict in the precision the bundle's thresholds were tuned in: a bundle trained in fp32
        # (on a CPU, or before bundles recorded it) stays fp32 on a GPU too; one trained in bf16 on
        # a GPU uses bf16 where the device has it (None = the device's default), fp32 elsewhere.
        precision = None if self.manifest.precision == "bf16" else "fp32"
        self.model: EmotionModel = load_model(self.path, self.manifest, Runtime(pick_device(device), precision, batch_size))

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
        """Probabilities [n, L] for non-empty texts (empty ones raise ``InputError``)."""
        prepared = [self._prepare(t, i)[0] for i, t in enumerate(texts)]
        return self._probs(prepared)

    def _prepare(self, text: Any, index: int) -> tuple[str, bool]:
        if not isinstance(text, str):
            raise InputError(f"text {index} is {type(text).__name__}, not a string")
        if not text.strip():
            raise InputError("the text is empty" if index == 0 else f"text {index} is empty")
        if "\x00" in text:
            raise InputError(f"text {index} holds NUL bytes: it looks like binary data, not text")
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
        probs = self._probs([p[0] for p in prepared])
        limits = self.thresholds if thresholds is None else np.asarray(thresholds, dtype=np.float32)
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
                     thresholds: Sequence[float] | None = None) -> dict[str, int]:
        """Stream a CSV/TSV/JSONL file through the model into a file of the same or another format.

        The output keeps every input column and adds ``prob_<label>`` and ``<label>`` (0/1)
        per label. Rows with an empty text keep empty prediction cells and are counted.
        Returns counts: rows, predicted, empty. ``on_progress(rows_done)`` is called after each chunk.
        The 0/1 columns use the bundle's thresholds unless others are given.
        """
        input_path, output_path = Path(input_path), Path(output_path)
        reader = _open_rows(input_path, text_column)
        stats = {"rows": 0, "predicted": 0, "empty": 0}
        tmp = output_path.with_name(f".{output_path.name}.partial")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(unit="row", desc="predict")
        try:
            with _RowWriter(tmp, _format_of(output_path)) as writer:
                for chunk in _chunks(reader, chunk_size):
                    texts = [row.get(text_column) for row in chunk]
                    keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
                    probs = self._probs([truncate(texts[i], MAX_CHARS)[0] for i in keep])
                    flags = apply_thresholds(probs, self.thresholds if thresholds is None
                                             else np.asarray(thresholds, dtype=np.float32))
                    filled = dict(zip(keep, range(len(keep))))
                    for i, row in enumerate(chunk):
                        out = dict(row)
                        j = filled.get(i)
                        for k, label in enumerate(self.labels):
                            out[f"prob_{label}"] = round(float(probs[j, k]), 6) if j is not None else None
                            out[label] = int(flags[j, k]) if j is not None else None
                        writer.write(out)
                    stats["rows"] += len(chunk)
                    stats["predicted"] += len(keep)
                    stats["empty"] += len(chunk) - len(keep)
                    if bar is not None:
                        bar.update(len(chunk))
                    if on_progress is not None:
                        on_progress(stats["rows"])
            tmp.replace(output_path)
        finally:
            if bar is not None:
                bar.close()
            tmp.unlink(missing_ok=True)
        return stats


def file_columns(path: str | Path) -> list[str]:
    """The columns (CSV/TSV header, or the first JSONL record's fields) of a file to predict;
    ``InputError`` for an unsupported type, a binary or non-UTF-8 file, or an empty one."""
    path = Path(path)
    fmt = _format_of(path)
    text = _read_head(path, fmt)
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path.name} is empty")
    if fmt == "jsonl":
        try:
            first = json.loads(lines[0])
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name}: line 1 is not valid JSON ({exc.msg})") from None
        if not isinstance(first, dict):
            raise InputError(f"{path.name}: line 1 is not a JSON object")
        return list(first)
    return next(csv.reader([lines[0]], delimiter="\t" if fmt == "tsv" else ","), [])


def _read_head(path: Path, fmt: str) -> str:
    """The file's first 64 KiB as text; ``InputError`` for NUL bytes (binary) or invalid UTF-8."""
    with path.open("rb") as f:
        head = f.read(65536)
    if b"\x00" in head:
        raise InputError(f"{path}: holds NUL bytes; it looks like a binary file, not {fmt.upper()} text")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the buffer's end
            line = head[: exc.start].count(b"\n") + 1
            raise InputError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start}); save the file as UTF-8") from None
        return head[: exc.start].decode("utf-8")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".txt"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    raise InputError(f"{path}: unsupported file type '{suffix}'; use .csv, .tsv or .jsonl")


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _open_rows(path: Path, text_column: str) -> Iterator[dict[str, Any]]:
    """Check the file's header now (so errors come before any output) and return a row iterator."""
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    fmt = _format_of(path)
    head = _read_head(path, fmt)
    if fmt == "jsonl":
        return _jsonl_rows(path, text_column)
    delimiter = "\t" if fmt == "tsv" else ","
    header_line = head.lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    header = next(csv.reader([header_line], delimiter=delimiter), [])
    if text_column not in header:
        other = "," if delimiter == "\t" else "\t"
        hint = (f"; the header looks {'comma' if other == ',' else 'tab'}-separated, rename the file"
                if len(header) == 1 and other in header_line else "")
        raise InputError(f"{path}: no column '{text_column}' (columns: {', '.join(header) or 'none'}); "
                         f"choose one with --text-column{hint}")
    return _delimited_rows(path, delimiter)


def _delimited_rows(path: Path, delimiter: str) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        try:
            for row in reader:
                if None in row:
                    raise InputError(f"{path}: line {reader.line_num} has more fields than the header "
                                     f"({len(reader.fieldnames or [])}); check the delimiter and quoting")
                yield row
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: near line {reader.line_num + 1}, bytes are not valid UTF-8 ({exc.reason}); "
                             "save the file as UTF-8") from None


def _jsonl_rows(path: Path, text_column: str) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig") as f:
        line_no = 0
        try:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict) or text_column not in row:
                    raise InputError(f"{path}: line {line_no} has no '{text_column}' field; choose one with --text-column")
                yield row
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: near line {line_no + 1}, bytes are not valid UTF-8 ({exc.reason}); "
                             "save the file as UTF-8") from None


class _RowWriter:
    """Writes dict rows as CSV/TSV (header from the first row) or JSONL."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self.writer: csv.DictWriter | None = None

    def __enter__(self) -> _RowWriter:
        self.file = self.path.open("w", encoding="utf-8", newline="")
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(row), delimiter="\t" if self.fmt == "tsv" else ",",
                                         extrasaction="ignore")
            self.writer.writeheader()
        self.writer.writerow(row)

    def __exit__(self, *exc: Any) -> None:
        self.file.close()
