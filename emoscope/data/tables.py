"""Low-level reading of delimited text files: UTF-8 checks, physical line numbers, records,
delimiter and width checks, 0/1 label values, and the rows a reader collects into a `Dataset`.

Every failure is a `DataError` whose message names the file, the 1-based physical line (the
header is line 1) and what was expected, so a user can open the file and fix it. Rows whose text
is empty are dropped with a warning and recorded in `Dataset.dropped`; texts longer than
`text.MAX_CHARS` are cut as `text.truncate` cuts them, with a warning naming their lines.

A field may hold up to `FIELD_LIMIT` characters (Python's csv module stops at 131,072): long
enough for any real text (models read only the first `MAX_CHARS`), short enough that a quote
never closed, or a binary blob, is caught on its line and a chunk of rows stays small in memory.
"""

from __future__ import annotations

import csv
import itertools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emoscope.data.dataset import LANGUAGES, Dataset
from emoscope.errors import DataError
from emoscope.text import MAX_CHARS, detect_language, truncate

FIELD_LIMIT = 1 << 20
csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))  # process-wide; only ever raised

_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_MAX_LINES_LISTED = 5


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
                    f'; fields hold at most {FIELD_LIMIT:,} characters: a quoted field starting on this line '
                    'is probably never closed (unbalanced ")'
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
    cut: list[int] = field(default_factory=list)  # lines whose text was longer than MAX_CHARS

    def add(self, line: int, text: str, labels: list[int], row_id: str) -> None:
        if not text.strip():
            self.dropped.append((line, "empty text"))
            return
        text, was_cut = truncate(text, MAX_CHARS)
        if was_cut:
            self.cut.append(line)
        self.texts.append(text)
        self.labels.append(labels)
        self.ids.append(row_id)

    def to_dataset(self, path: Path, label_names: list[str], language: str) -> Dataset:
        if self.dropped:
            lines = [line for line, _ in self.dropped]
            warnings.warn(f"{path}: dropped {len(lines)} row(s) with empty text (lines {_listed(lines)})",
                          stacklevel=3)
        if self.cut:
            warnings.warn(f"{path}: {len(self.cut)} text(s) longer than {MAX_CHARS:,} characters were cut to their "
                          f"first {MAX_CHARS:,} (lines {_listed(self.cut)})", stacklevel=3)
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


def _listed(lines: list[int]) -> str:
    more = ", ..." if len(lines) > _MAX_LINES_LISTED else ""
    return ", ".join(map(str, lines[:_MAX_LINES_LISTED])) + more


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
