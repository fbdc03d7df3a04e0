"""Emotion datasets: readers for BRIGHTER, SemEval-2018 E-c, GoEmotions and generic CSV/TSV
files, the `Dataset` they return, dataset specs ("brighter:ary:train"), combining datasets and
iterative stratified splitting.

Every reader fails with a `DataError` whose message names the file, the 1-based physical line
(the header is line 1) and what was expected, so a user can open the file and fix it.
Rows whose text is empty are dropped with a warning and recorded in `Dataset.dropped`.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoscope.errors import ConfigError, DataError
from emoscope.text import detect_language

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BRIGHTER_LANGUAGES",
    "LANGUAGES",
    "Dataset",
    "combine",
    "default_data_root",
    "iterative_stratified_split",
    "load_dataset",
    "read_brighter",
    "read_goemotions",
    "read_semeval2018",
    "read_table",
    "split_dataset",
    "train_dev",
]

LANGUAGES = ("en", "ar", "hi", "de", "es", "mixed", "unknown")
"""Values of `Dataset.language`; "unknown" is for generic files whose script is neither."""

BRIGHTER_LANGUAGES = {"eng": "en", "arq": "ar", "ary": "ar", "hin": "hi", "deu": "de", "esp": "es"}
"""BRIGHTER language codes (folder names and id prefixes) and the language each one is."""

SPLITS = ("train", "dev", "test")

_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_MAX_LINES_LISTED = 5


# --- the dataset -------------------------------------------------------------------------------


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


# --- reading files -------------------------------------------------------------------------------


def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file (expected a CSV/TSV text file)")


def _read_utf8(path: Path) -> str:
    """Return the file's text, or a DataError saying why it is not readable UTF-8 text."""
    _require_file(path)
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(
            f"{path}: the file is UTF-16 encoded; it must be UTF-8 (re-save it as UTF-8)"
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(
            f"{path}: line {line} (byte offset {nul}): NUL byte; this looks like a binary file "
            "(zip, gzip, Excel, ...), not UTF-8 CSV/TSV text; export or decompress it to CSV/TSV"
        )
    try:
        # utf-8-sig accepts (and removes) the byte-order mark Excel and Notepad write.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.end]
        raise DataError(
            f"{path}: line {line} (byte offset {err.start}): bytes {bad!r} are not valid UTF-8; "
            "the file must be UTF-8 encoded (re-save it as UTF-8)"
        ) from None


def _physical_lines(text: str) -> Iterator[str]:
    """Yield lines split on "\\n" only, ends kept, so csv.reader's line_num counts the lines an
    editor shows (str.splitlines would also split on U+2028 and other separators inside texts).
    """
    start = 0
    while True:
        end = text.find("\n", start)
        if end < 0:
            if start < len(text):
                yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def _records(
    path: Path, text: str, delimiter: str, quoting: int
) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, fields) per record; blank lines are skipped."""
    reader = csv.reader(_physical_lines(text), delimiter=delimiter, quoting=quoting, strict=True)
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            hint = ""
            if "end of data" in str(err) or "field limit" in str(err):
                hint = (
                    '; a quoted field starting on this line is probably never closed (unbalanced ")'
                )
            raise DataError(
                f"{path}: line {line}: malformed {_name(delimiter)}-separated row: {err}{hint}"
            ) from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield line, row


def _name(delimiter: str) -> str:
    return _DELIMITER_NAMES.get(delimiter, repr(delimiter))


def _other_delimiter(fields: list[str], delimiter: str) -> str | None:
    """The delimiter a one-field row seems to use instead of `delimiter`, if any."""
    if len(fields) != 1:
        return None
    for candidate in _DELIMITER_NAMES:
        if candidate != delimiter and candidate in fields[0]:
            return candidate
    return None


def _check_delimiter(path: Path, line: int, fields: list[str], delimiter: str) -> None:
    other = _other_delimiter(fields, delimiter)
    if other is not None:
        raise DataError(
            f"{path}: line {line}: expected {_name(delimiter)}-separated columns but found one "
            f"column {fields[0][:80]!r}; the file seems to be {_name(other)}-separated"
        )


def _check_width(
    path: Path, line: int, fields: list[str], width: int, delimiter: str, columns: str
) -> None:
    if len(fields) == width:
        return
    _check_delimiter(path, line, fields, delimiter)
    hint = ""
    if len(fields) > width and delimiter == ",":
        hint = "; a text containing commas must be in double quotes"
    raise DataError(
        f"{path}: line {line}: expected {width} {_name(delimiter)}-separated fields ({columns}), "
        f"found {len(fields)}{hint}"
    )


def _label_value(path: Path, line: int, column: str, value: str) -> int:
    stripped = value.strip()
    if stripped == "1":
        return 1
    if stripped == "0":
        return 0
    raise DataError(f"{path}: line {line}: label column {column!r} must be 0 or 1, found {value!r}")


@dataclass
class _Rows:
    """Rows parsed from one file, before they become a Dataset."""

    texts: list[str] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, text: str, labels: list[int], row_id: str) -> None:
        if not text.strip():
            self.dropped.append((line, "empty text"))
            return
        self.texts.append(text)
        self.labels.append(labels)
        self.ids.append(row_id)

    def to_dataset(self, path: Path, label_names: list[str], language: str) -> Dataset:
        if self.dropped:
            lines = [line for line, _ in self.dropped]
            listed = ", ".join(map(str, lines[:_MAX_LINES_LISTED]))
            more = ", ..." if len(lines) > _MAX_LINES_LISTED else ""
            warnings.warn(
                f"{path}: dropped {len(lines)} row(s) with empty text (lines {listed}{more})",
                stacklevel=3,
            )
        if not self.texts:
            raise DataError(
                f"{path}: no data rows with text (all {len(self.dropped)} rows have empty text)"
            )
        labels = np.asarray(self.labels, dtype=np.uint8).reshape(len(self.texts), len(label_names))
        return Dataset(
            texts=self.texts,
            labels=labels,
            label_names=label_names,
            language=language,
            name=str(path),
            ids=self.ids,
            dropped=self.dropped,
        )


def _with_header(
    path: Path, delimiter: str, quoting: int = csv.QUOTE_MINIMAL
) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """Read a delimited file with a header: (header line, header, data records)."""
    records = list(_records(path, _read_utf8(path), delimiter, quoting))
    if not records:
        raise DataError(f"{path}: the file is empty; expected a header line and data rows")
    header_line, header = records[0]
    _check_delimiter(path, header_line, header, delimiter)
    header = [name.strip() for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(
            f"{path}: line {header_line}: duplicate column name(s) {', '.join(duplicates)}"
        )
    if len(records) == 1:
        raise DataError(f"{path}: no data rows after the header on line {header_line}")
    return header_line, header, records[1:]


def _guess_language(texts: Iterable[str], limit: int = 2000) -> str:
    """Script of a corpus: "ar", "en", "mixed" or "unknown" (Latin script is reported as "en")."""
    return detect_language(" ".join(itertools.islice(texts, limit)))


def _check_language(path: Path, language: str) -> str:
    if language not in LANGUAGES:
        raise DataError(f"{path}: language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return language


def _id_text_label_rows(
    path: Path, header: list[str], records: Iterable[tuple[int, list[str]]], delimiter: str, columns: str
) -> _Rows:
    """Rows of an `id, text, <0/1 label columns>` file (BRIGHTER, SemEval-2018 E-c)."""
    label_names = header[2:]
    rows = _Rows()
    for line, fields in records:
        _check_width(path, line, fields, len(header), delimiter, columns)
        labels = [
            _label_value(path, line, name, value)
            for name, value in zip(label_names, fields[2:], strict=True)
        ]
        rows.add(line, fields[1], labels, fields[0])
    return rows


def read_brighter(path: Path | str, language: str | None = None) -> Dataset:
    """Read a BRIGHTER (SemEval-2025 Task 11, track A) CSV: header `id,text,<label columns>`.

    `language` defaults to the one the folder name or the id prefix names ("ary" → "ar"),
    else to the script of the texts.
    """
    path = Path(path)
    header_line, header, records = _with_header(path, ",")
    if header[:2] != ["id", "text"] or len(header) < 3:
        raise DataError(
            f"{path}: line {header_line}: expected a BRIGHTER header 'id,text,<label columns>', "
            f"found {','.join(header)!r}; for other layouts use the generic reader (--text-column)"
        )
    label_names = header[2:]
    rows = _id_text_label_rows(path, header, records, ",", ",".join(header))
    if language is None:
        code = path.parent.name
        if code not in BRIGHTER_LANGUAGES and rows.ids:
            code = rows.ids[0].split("_")[0]
        language = BRIGHTER_LANGUAGES.get(code) or _guess_language(rows.texts)
    return rows.to_dataset(path, label_names, _check_language(path, language))


def read_semeval2018(path: Path | str, language: str | None = None) -> Dataset:
    """Read a SemEval-2018 Task 1 E-c file: TSV (CRLF), header `ID Tweet anger ... trust`.

    Tweets are not quoted in this format, so quote characters are read as text.
    `language` defaults to the folder name ("ar"/"en"), else to the script of the texts.
    """
    path = Path(path)
    header_line, header, records = _with_header(path, "\t", quoting=csv.QUOTE_NONE)
    if header[:2] != ["ID", "Tweet"] or len(header) < 3:
        raise DataError(
            f"{path}: line {header_line}: expected a SemEval-2018 E-c header "
            f"'ID<tab>Tweet<tab><label columns>', found {header!r}"
        )
    label_names = header[2:]
    rows = _id_text_label_rows(path, header, records, "\t", "ID, Tweet, " + ", ".join(label_names))
    if language is None:
        language = (
            path.parent.name if path.parent.name in ("ar", "en") else _guess_language(rows.texts)
        )
    return rows.to_dataset(path, label_names, _check_language(path, language))


def _goemotions_label_names(labels_path: Path) -> list[str]:
    names = [line.strip() for line in _physical_lines(_read_utf8(labels_path))]
    names = [name for name in names if name]
    if not names:
        raise DataError(f"{labels_path}: no label names; expected one label name per line")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{labels_path}: duplicate label name(s) {', '.join(duplicates)}")
    return names


_LABEL_IDS = re.compile(r"\d+(,\d+)*")


def read_goemotions(
    path: Path | str, labels_path: Path | str | None = None, language: str = "en"
) -> Dataset:
    """Read a GoEmotions TSV: no header; text, comma-separated 0-based label ids, comment id.

    `labels_path` (default: labels.txt beside the file) lists the label names, one per line,
    in id order. Texts containing tabs or quotes are CSV-quoted in this format.
    """
    path = Path(path)
    labels_path = path.parent / "labels.txt" if labels_path is None else Path(labels_path)
    label_names = _goemotions_label_names(labels_path)
    last_id = len(label_names) - 1
    rows = _Rows()
    columns = "text, label ids, comment id"
    found_any = False
    for line, fields in _records(path, _read_utf8(path), "\t", csv.QUOTE_MINIMAL):
        found_any = True
        _check_width(path, line, fields, 3, "\t", columns)
        text, ids_field, comment_id = fields
        ids_field = ids_field.strip()
        if not _LABEL_IDS.fullmatch(ids_field):
            raise DataError(
                f"{path}: line {line}: the second field must be comma-separated label ids "
                f"0-{last_id}, found {ids_field!r}"
            )
        labels = [0] * len(label_names)
        for label_id in map(int, ids_field.split(",")):
            if label_id > last_id:
                raise DataError(
                    f"{path}: line {line}: label id {label_id} is out of range 0-{last_id} "
                    f"({labels_path} names {len(label_names)} labels)"
                )
            labels[label_id] = 1
        rows.add(line, text, labels, comment_id)
    if not found_any:
        raise DataError(f"{path}: no data rows; expected lines 'text<tab>label ids<tab>comment id'")
    return rows.to_dataset(path, label_names, _check_language(path, language))


def _sniff_delimiter(path: Path) -> str:
    """The extension's delimiter when the header splits with it, else the one the header uses."""
    with path.open("rb") as f:
        first = f.readline(65536).decode("utf-8", errors="replace")
    by_extension = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
    if by_extension is not None and by_extension in first:
        return by_extension
    for candidate in ("\t", ",", ";", "|"):
        if candidate in first:
            return candidate
    return by_extension or ","


def _find_column(path: Path, line: int, header: list[str], name: str, option: str) -> int:
    if name in header:
        return header.index(name)
    folded = [i for i, column in enumerate(header) if column.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise DataError(
        f"{path}: line {line}: no column named {name!r}; columns found: {', '.join(header)}; "
        f"name the right one with {option}"
    )


def read_table(
    path: Path | str,
    text_column: str = "text",
    label_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    delimiter: str | None = None,
    language: str | None = None,
) -> Dataset:
    """Read any CSV/TSV file with a header, a text column and 0/1 label columns.

    `delimiter` defaults to the extension's (.csv comma, .tsv tab) when the header uses it,
    else to whichever of tab, comma, semicolon or pipe the header contains. `label_columns`
    defaults to every column other than the text and id columns whose values are all 0 or 1
    (a column that is 0/1 in at least 90% of rows is taken as a label column with typos, and
    its first other value is reported as an error). `id_column` defaults to a column named
    "id" if there is one, else to line numbers. `language` defaults to the script of the texts
    ("en" for any Latin-script text).
    """
    path = Path(path)
    if delimiter is None:
        _require_file(path)
        delimiter = _sniff_delimiter(path)
    header_line, header, records = _with_header(path, delimiter)
    text_index = _find_column(path, header_line, header, text_column, "--text-column")
    if id_column is not None:
        id_index: int | None = _find_column(path, header_line, header, id_column, "--id-column")
    else:
        id_index = next(
            (i for i, c in enumerate(header) if c.casefold() == "id" and i != text_index), None
        )
    columns = ", ".join(header)
    for line, fields in records:
        _check_width(path, line, fields, len(header), delimiter, columns)
    if label_columns is not None:
        label_indices = [
            _find_column(path, header_line, header, c, "--label-columns") for c in label_columns
        ]
    else:
        label_indices = _binary_columns(path, header, records, {text_index, id_index})
    if not label_indices:
        raise DataError(
            f"{path}: line {header_line}: no label columns; no column other than the text and id "
            f"columns holds only 0/1 values (columns found: {', '.join(header)}); "
            "name them with --label-columns"
        )
    label_names = [header[i] for i in label_indices]
    rows = _Rows()
    for line, fields in records:
        labels = [_label_value(path, line, header[i], fields[i]) for i in label_indices]
        row_id = fields[id_index] if id_index is not None else str(line)
        rows.add(line, fields[text_index], labels, row_id)
    if language is None:
        language = _guess_language(rows.texts)
    return rows.to_dataset(path, label_names, _check_language(path, language))


def _binary_columns(
    path: Path, header: list[str], records: list[tuple[int, list[str]]], skip: set[int | None]
) -> list[int]:
    indices = []
    for i, column in enumerate(header):
        if i in skip:
            continue
        bad = [(line, fields[i]) for line, fields in records if fields[i].strip() not in ("0", "1")]
        if not bad:
            indices.append(i)
        elif len(bad) <= 0.1 * len(records):
            line, value = bad[0]
            _label_value(path, line, column, value)
    return indices


# --- dataset specs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Corpus:
    folder: str
    languages: dict[str, str]
    suffix: str
    reader: Callable[[Path, str], Dataset]


def _read_goemotions_spec(path: Path, language: str) -> Dataset:
    return read_goemotions(path, language=language)


_CORPORA = {
    "brighter": _Corpus("brighter_track_a", BRIGHTER_LANGUAGES, ".csv", read_brighter),
    "semeval2018": _Corpus("semeval2018_ec", {"ar": "ar", "en": "en"}, ".txt", read_semeval2018),
    "goemotions": _Corpus("goemotions", {"en": "en"}, ".tsv", _read_goemotions_spec),
}


def default_data_root() -> Path:
    """Folder holding the public datasets.

    `EMOSCOPE_DATA_ROOT` when set; else the first `shared/datasets` found walking up from the
    current directory and then from this file's directory (a checkout sits at X/main with the
    data at X/shared/datasets).
    """
    env = os.environ.get("EMOSCOPE_DATA_ROOT")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise DataError(f"EMOSCOPE_DATA_ROOT={env} is not a directory")
        return root
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "datasets"
            if candidate.is_dir():
                return candidate
    raise DataError(
        "no dataset folder found: no shared/datasets above the current directory or the "
        "emoscope package; set EMOSCOPE_DATA_ROOT to the folder holding the datasets"
    )


def _is_spec(spec: str) -> bool:
    return ":" in spec and "/" not in spec and "\\" not in spec and not Path(spec).exists()


def _parse_spec(spec: str) -> tuple[_Corpus, str, str, str]:
    """(corpus, corpus language code, split, dataset language) for "corpus:lang:split"."""
    parts = spec.split(":")
    corpora = ", ".join(_CORPORA)
    if len(parts) != 3:
        raise DataError(
            f"dataset spec {spec!r} must be corpus:language:split (e.g. brighter:ary:train) "
            f"or a file path; corpora: {corpora}"
        )
    corpus_name, code, split = parts
    corpus = _CORPORA.get(corpus_name)
    if corpus is None:
        raise DataError(
            f"dataset spec {spec!r}: unknown corpus {corpus_name!r}; valid corpora: {corpora}"
        )
    if code not in corpus.languages:
        raise DataError(
            f"dataset spec {spec!r}: unknown language {code!r} for {corpus_name}; "
            f"valid: {', '.join(corpus.languages)}"
        )
    if split not in SPLITS:
        raise DataError(
            f"dataset spec {spec!r}: unknown split {split!r}; valid: {', '.join(SPLITS)}"
        )
    return corpus, code, split, corpus.languages[code]


def _spec_path(spec: str, data_root: Path | str | None) -> tuple[_Corpus, Path, str]:
    corpus, code, split, language = _parse_spec(spec)
    root = default_data_root() if data_root is None else Path(data_root)
    return corpus, root / corpus.folder / code / f"{split}{corpus.suffix}", language


def _detect_format(path: Path) -> Callable[..., Dataset]:
    """The reader for a file, from its first line (and labels.txt beside a headerless TSV)."""
    with path.open("rb") as f:
        first = f.readline(65536).decode("utf-8-sig", errors="replace").rstrip("\r\n")
    if first.startswith("ID\tTweet"):
        return read_semeval2018
    if first.split(",")[:2] == ["id", "text"]:
        return read_brighter
    fields = first.split("\t")
    if (
        len(fields) == 3
        and _LABEL_IDS.fullmatch(fields[1])
        and (path.parent / "labels.txt").is_file()
    ):
        return read_goemotions
    return read_table


def load_dataset(spec: str, data_root: Path | str | None = None, **reader_kwargs: Any) -> Dataset:
    """Load a dataset from a spec or a file path.

    Specs: `brighter:<eng|arq|ary|hin|deu|esp>:<split>`, `semeval2018:<ar|en>:<split>`,
    `goemotions:en:<split>`, read under `data_root` (default: `default_data_root()`).
    A file path is read by the reader its first line points to: `ID<tab>Tweet...` → SemEval,
    `id,text,...` → BRIGHTER, a headerless 3-column TSV with labels.txt beside it → GoEmotions,
    anything else → `read_table(path, **reader_kwargs)`. Keyword arguments set to None are
    ignored; `language` applies to every file reader, the other `read_table` options only to
    generic files.
    """
    kwargs = {key: value for key, value in reader_kwargs.items() if value is not None}
    if _is_spec(spec):
        corpus, path, language = _spec_path(spec, data_root)
        if kwargs:
            raise DataError(
                f"dataset spec {spec!r}: reader options {sorted(kwargs)} apply to files only"
            )
        if not path.is_file():
            raise DataError(
                f"dataset {spec!r}: file not found: {path} (data root {path.parents[2]}; "
                "set EMOSCOPE_DATA_ROOT or pass the data root)"
            )
        dataset = corpus.reader(path, language)
        dataset.name = spec
        return dataset
    path = Path(spec)
    _require_file(path)
    reader = _detect_format(path)
    if reader is not read_table:
        unexpected = sorted(set(kwargs) - {"language"})
        if unexpected:
            raise DataError(
                f"{path}: options {unexpected} apply to generic CSV/TSV files only, and this "
                f"file is read by {reader.__name__}"
            )
    return reader(path, **kwargs)


# --- splitting -----------------------------------------------------------------------------------


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
