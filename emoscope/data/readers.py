"""File readers: BRIGHTER CSV, SemEval-2018 E-c TSV, GoEmotions TSV (+ labels.txt) and any
generic CSV/TSV with a text column and 0/1 label columns (`read_table`).

Each fails with a `DataError` naming the file, the 1-based physical line and what was expected
(see `emoscope.data.tables`); rows with empty text are dropped with a warning.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from emoscope.data.dataset import Dataset
from emoscope.data.tables import (
    _check_language,
    _check_width,
    _guess_language,
    _label_value,
    _physical_lines,
    _read_utf8,
    _records,
    _require_file,
    _Rows,
    _with_header,
)
from emoscope.errors import DataError

BRIGHTER_LANGUAGES = {"eng": "en", "arq": "ar", "ary": "ar", "hin": "hi", "deu": "de", "esp": "es"}
"""BRIGHTER language codes (folder names and id prefixes) and the language each one is."""


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
        label_indices, near = _binary_columns(path, header, records, {text_index, id_index})
    if not label_indices:
        found = "; ".join(f"column {c!r} has {v!r} on line {line}" for c, (line, v) in list(near.items())[:3])
        raise DataError(
            f"{path}: line {header_line}: no label columns: a label column holds only 0 or 1, and no column "
            f"other than the text and id columns does ({found or 'columns found: ' + ', '.join(header)})"
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
) -> tuple[list[int], dict[str, tuple[int, str]]]:
    """The 0/1 columns, and each other column's first value that is not 0 or 1 (with its line)."""
    indices, near = [], {}
    for i, column in enumerate(header):
        if i in skip:
            continue
        bad = [(line, fields[i]) for line, fields in records if fields[i].strip() not in ("0", "1")]
        if not bad:
            indices.append(i)
        elif len(bad) <= 0.1 * len(records):
            line, value = bad[0]
            _label_value(path, line, column, value)
        else:
            near[column] = bad[0]
    return indices, near
