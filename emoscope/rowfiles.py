"""Row files: the CSV, TSV and JSONL files ``predict`` reads and writes, checked before any work.

A file is read twice. :func:`scan` checks every row first (each line is UTF-8 and holds no NUL,
each record parses, the text field is a string, empty or missing, and holds nothing that cannot
be encoded, ``text.check_text``) and collects the columns, so a bad row 90,000 is reported, by
line, before the model reads row 1, and a JSONL file written as CSV keeps every key any of its
rows has (the union, in order of first appearance; a row's missing keys are empty cells).
:func:`read_rows` then streams the same rows again for :func:`chunks`, so memory stays bounded
by the chunk size. Texts are never guessed: a number or a list where the text should be is an
error naming the line (JSON ``null`` is an empty text, like an empty CSV cell). :class:`RowWriter`
writes the output, which ``fsutil.atomic_file`` puts in place only when it is complete.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoscope.data.tables import FIELD_LIMIT
from emoscope.errors import InputError
from emoscope.fsutil import check_output_file
from emoscope.text import MAX_CHARS, check_text

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_LINE_BYTES = 4 * FIELD_LIMIT
"""Longest physical line read (a UTF-8 character is at most 4 bytes): a file without line breaks
is refused on its first line instead of being read whole into memory."""

_LONE_CR = re.compile(r"(?<=\r)(?!\n)")

Row = tuple[int, dict[str, Any], "str | None"]
"""One record: its first line, its fields, and its text (None: empty, blank or missing)."""


def format_of(path: str | os.PathLike[str]) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the file's extension (``InputError`` for any other)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unsupported file type '{path.suffix.lower()}'; use .csv, .tsv or .jsonl")
    return fmt


def check_job(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], chunk_size: int) -> None:
    """Everything about a file to predict that can be checked before a model loads: the chunk
    size, the input (a file of a known type), the output (a known type, in a folder that exists,
    not a directory) and that the output is not the input (an input file is never modified)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"--chunk-size must be a whole number of rows, at least 1; got {chunk_size!r}")
    source, target = Path(input_path), Path(output_path)
    if not source.exists():
        raise InputError(f"input file not found: {source}")
    if not source.is_file():
        raise InputError(f"--input {source} is a folder, not a file; give a CSV, TSV or JSONL file")
    format_of(source)
    check_output_file(target)
    format_of(target)
    if target.resolve() == source.resolve() or (target.exists() and os.path.samefile(source, target)):
        raise InputError(f"--output {target} is the input file; predictions never overwrite their input: "
                         "choose another output name")


class _Lines:
    """A file's physical lines as text, each checked (length, UTF-16, NUL, UTF-8); ``number`` is
    the line last read. Lines end at \\n, \\r\\n or \\r, as ``open(newline="")`` has csv read them."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.number = path, fmt, 0

    def __iter__(self) -> Iterator[str]:
        with self.path.open("rb") as f:
            while raw := f.readline(MAX_LINE_BYTES + 1):
                self.number += 1
                line = self._decode(raw)
                if self.fmt == "jsonl" or "\r" not in line:
                    yield line
                else:  # a lone \r ends a line too (old Mac files)
                    yield from (piece for piece in _LONE_CR.split(line) if piece)

    def _decode(self, raw: bytes) -> str:
        where = f"{self.path}: line {self.number}"
        if len(raw) > MAX_LINE_BYTES:
            raise InputError(f"{where} is longer than {MAX_LINE_BYTES:,} bytes: this does not look like "
                             f"{self.fmt.upper()} text")
        if self.number == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(f"{self.path}: the file is UTF-16 encoded; save it as UTF-8")
        if b"\x00" in raw:
            raise InputError(f"{where} holds a NUL byte: it looks like a binary file, not {self.fmt.upper()} text")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where} is not valid UTF-8 (byte {exc.start + 1} of the line); save the file as "
                             "UTF-8") from None
        return line.removeprefix("\ufeff") if self.number == 1 else line


def _records(path: Path, fmt: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) per CSV/TSV record; blank lines skipped; errors name the line."""
    lines = _Lines(path, fmt)
    reader = csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",", strict=True)
    end = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{path}: line {end + 1}: malformed {fmt.upper()} row ({exc}); fields hold at most "
                             f"{FIELD_LIMIT:,} characters, so a quoted field starting here is probably never "
                             'closed (unbalanced ")') from None
        start, end = end + 1, lines.number
        if fields:
            yield start, fields


def _header(path: Path, fmt: str, records: Iterator[tuple[int, list[str]]], text_column: str) -> list[str]:
    first = next(records, None)
    if first is None:
        raise InputError(f"{path}: the file is empty; nothing to predict")
    line, header = first
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise InputError(f"{path}: line {line}: duplicate column name(s) {', '.join(duplicates)}; rename them")
    if text_column not in header:
        other = "," if fmt == "tsv" else "\t"
        hint = (f"; the header looks {'comma' if other == ',' else 'tab'}-separated, rename the file"
                if len(header) == 1 and other in header[0] else "")
        raise InputError(f"{path}: no column '{text_column}' (columns: {', '.join(header) or 'none'}); "
                         f"choose one with --text-column{hint}")
    return header


def _delimited_rows(path: Path, fmt: str, text_column: str) -> tuple[list[str], Iterator[Row]]:
    records = _records(path, fmt)
    header = _header(path, fmt, records, text_column)

    def rows() -> Iterator[Row]:
        for line, fields in records:
            if len(fields) > len(header):
                raise InputError(f"{path}: line {line} has more fields than the header ({len(header)}); check the "
                                 "delimiter and quoting")
            row = dict(zip(header, fields))
            row.update((c, None) for c in header[len(fields):])
            yield line, row, row_text(path, line, row[text_column], text_column)
    return header, rows()


def _jsonl_rows(path: Path, text_column: str) -> Iterator[Row]:
    lines = _Lines(path, "jsonl")
    for line in lines:
        if not line.strip():
            continue
        where = f"{path}: line {lines.number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise InputError(f"{where} nests JSON arrays or objects too deeply") from None
        if not isinstance(row, dict):
            raise InputError(f"{where} is {_kind(row)}, not a JSON object with a '{text_column}' field")
        if text_column not in row:
            raise InputError(f"{where} has no '{text_column}' field; choose one with --text-column")
        yield lines.number, row, row_text(path, lines.number, row[text_column], text_column)


def _kind(value: Any) -> str:
    """A JSON value's kind with its article: "a number", "an array", ..."""
    return {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object",
            str: "a string"}.get(type(value), "a value")


def row_text(path: Path, line: int, value: Any, text_column: str) -> str | None:
    """A row's text, None when empty or missing; ``InputError`` naming the line when it is not a
    string (a number, a list, ...) or cannot be encoded."""
    if value is None:
        return None
    if not isinstance(value, str):
        shown = json.dumps(value, ensure_ascii=False)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise InputError(f"{path}: line {line}: '{text_column}' is {_kind(value)} ({shown}), not text; write it "
                         f"as a JSON string (\"...\") or choose another field with --text-column")
    check_text(value, f"{path}: line {line}: the text")
    return value if value.strip() else None


def read_rows(path: str | os.PathLike[str], text_column: str = "text") -> Iterator[Row]:
    """Every record of a CSV/TSV/JSONL file as ``(line, fields, text)``, checked as it is read."""
    path = Path(path)
    fmt = format_of(path)
    return _jsonl_rows(path, text_column) if fmt == "jsonl" else _delimited_rows(path, fmt, text_column)[1]


@dataclass
class Scan:
    """What the first pass found: the columns (CSV/TSV header, or the union of JSON keys), the
    number of rows and of rows without text, and the lines of texts over ``MAX_CHARS``."""

    columns: list[str]
    rows: int = 0
    empty: int = 0
    long: list[int] = field(default_factory=list)


def scan(path: str | os.PathLike[str], text_column: str = "text") -> Scan:
    """Check every row of a file to predict (``InputError`` by line) and collect its columns."""
    path = Path(path)
    fmt = format_of(path)
    if fmt == "jsonl":
        keys: dict[str, None] = {}
        found, rows = Scan([]), _jsonl_rows(path, text_column)
    else:
        header, rows = _delimited_rows(path, fmt, text_column)
        found, keys = Scan(header), {}
    for line, row, text in rows:
        found.rows += 1
        found.empty += text is None
        if text is not None and len(text) > MAX_CHARS:
            found.long.append(line)
        if fmt == "jsonl":
            keys.update(dict.fromkeys(row))
    if fmt == "jsonl":
        found.columns = list(keys)
    if not found.rows:
        raise InputError(f"{path}: no rows" + ("" if fmt == "jsonl" else " after the header") + "; nothing to predict")
    return found


def chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def file_columns(path: str | os.PathLike[str]) -> list[str]:
    """The columns (CSV/TSV header, or the first JSONL record's fields) of a file to predict, from
    its first 64 KiB; ``InputError`` for an unsupported type, a binary or non-UTF-8 file, or an empty one."""
    path = Path(path)
    fmt = format_of(path)
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


class RowWriter:
    """Writes rows as CSV/TSV under ``columns`` (a row's missing keys are empty cells, a JSON array
    or object is written as JSON) or as JSONL (each row with its own keys). A lone surrogate in a
    value is written as its ``\\u`` escape, so JSONL output round-trips it and nothing fails."""

    def __init__(self, path: Path, fmt: str, columns: Sequence[str]):
        self.path, self.fmt, self.columns = path, fmt, list(columns)

    def __enter__(self) -> RowWriter:
        self.file = self.path.open("w", encoding="utf-8", errors="backslashreplace", newline="")
        if self.fmt != "jsonl":
            self.writer = csv.writer(self.file, delimiter="\t" if self.fmt == "tsv" else ",")
            self.writer.writerow(self.columns)
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        self.writer.writerow([_cell(row.get(c)) for c in self.columns])

    def __exit__(self, *exc: Any) -> None:
        self.file.close()


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value
