"""Dataset specs ("brighter:ary:train"), the data root holding the public datasets, format
detection for file paths, and `load_dataset`, the one entry point for both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoscope.data.dataset import Dataset
from emoscope.data.readers import (
    _LABEL_IDS,
    BRIGHTER_LANGUAGES,
    read_brighter,
    read_goemotions,
    read_semeval2018,
    read_table,
)
from emoscope.data.tables import _require_file
from emoscope.errors import DataError

SPLITS = ("train", "dev", "test")


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
