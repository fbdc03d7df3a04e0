"""A trained model on disk: one self-describing directory, written atomically, loaded safely.

Layout::

    manifest.json        format version, labels, languages, encoders and their sources,
                         thresholds, metrics, training config, library versions, data
                         fingerprint, and the size + sha256 of every other file
    model/encoder/       fine-tuned encoder and tokenizer (save_pretrained layout, safetensors)
    model/head.safetensors
    validation.json      validation texts, gold labels and predicted probabilities
    training_log.jsonl   one JSON object per epoch
    README.md            the model card (``emoscope.card``), and training_curves.svg beside it

No pickle anywhere: weights are safetensors, everything else is JSON, so loading a bundle
from a stranger cannot run code. A bundle is built in a hidden temporary sibling folder and
renamed into place, so an interrupted run never leaves a half bundle that looks whole; the
file hashes catch truncated or edited files later.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoscope.card import CARD, CARD_FILES, write_card
from emoscope.errors import BundleError
from emoscope.fsutil import atomic_directory, sha256_file
from emoscope.manifest import FORMAT, FORMAT_VERSION, Manifest, PathThresholds

MANIFEST = "manifest.json"
VALIDATION = "validation.json"
LOG = "training_log.jsonl"


@dataclass
class ValidationData:
    """The validation set a bundle was tuned on, with the model's probabilities for it."""

    texts: list[str]
    labels: np.ndarray  # uint8 [n, L]
    probs: np.ndarray  # float32 [n, L]
    ids: list[str]
    mask: np.ndarray | None = None  # bool [n, L], True = annotated; None = all annotated

    @classmethod
    def of(cls, dataset: Any, probs: np.ndarray) -> ValidationData:
        """A validation ``Dataset`` and the model's probabilities for it."""
        return cls(texts=list(dataset.texts), labels=dataset.labels, probs=probs, ids=list(dataset.ids),
                   mask=dataset.label_mask)

    def to_json(self) -> dict[str, Any]:
        out = {
            "texts": self.texts,
            "ids": self.ids,
            "labels": self.labels.astype(int).tolist(),
            "probs": np.round(self.probs.astype(float), 6).tolist(),
        }
        if self.mask is not None:
            out["mask"] = self.mask.astype(int).tolist()
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any], n_labels: int) -> ValidationData:
        labels = np.asarray(raw["labels"], dtype=np.uint8).reshape(-1, n_labels)
        probs = np.asarray(raw["probs"], dtype=np.float32).reshape(-1, n_labels)
        texts = list(raw["texts"])
        if not (len(texts) == len(labels) == len(probs)):
            raise ValueError("texts, labels and probs differ in length")
        mask = None if raw.get("mask") is None else np.asarray(raw["mask"], dtype=bool).reshape(-1, n_labels)
        if mask is not None and len(mask) != len(texts):
            raise ValueError("mask and texts differ in length")
        return cls(texts=texts, labels=labels, probs=probs, ids=list(raw.get("ids") or map(str, range(len(texts)))),
                   mask=mask)


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("emoscope", "torch", "transformers", "tokenizers", "safetensors", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_bundle(
    target: str | Path,
    manifest: Manifest,
    write_model: Callable[[Path], None],
    validation: ValidationData | None = None,
    log: Iterable[dict[str, Any]] = (),
    overwrite: bool = False,
) -> Path:
    """Write a bundle atomically; ``write_model(folder)`` writes the weights into ``folder``.

    ``manifest`` holds everything descriptive; this function adds the format, version,
    library versions, the model card and the file table. An existing ``target`` is replaced only when
    ``overwrite`` is true, and only once the new bundle is complete.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists; choose another --output or pass --overwrite")
    with atomic_directory(target, overwrite=overwrite) as tmp:
        write_model(tmp / "model")
        if validation is not None:
            _write_json(tmp / VALIDATION, validation.to_json())
        rows = list(log)
        with (tmp / LOG).open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        full = dataclasses.replace(manifest, format=FORMAT, format_version=FORMAT_VERSION,
                                   library_versions=library_versions())
        write_card(tmp, full, validation, rows)  # before the file table, which lists the card
        files = {str(p.relative_to(tmp)): _file_entry(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        _write_json(tmp / MANIFEST, dataclasses.replace(full, files=files).to_dict())
    return target


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def _file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def read_manifest(path: str | Path, verify: bool = True) -> Manifest:
    """Read and check a bundle's manifest; ``verify`` also checks every file's size and hash.

    Raises ``BundleError`` for a missing folder or manifest, a foreign or newer format, and
    missing, truncated or modified files, each with what to do about it.
    """
    folder = Path(path)
    manifest = _parse_manifest(folder)
    _check_files(folder, manifest.files, verify)
    return manifest


def _parse_manifest(folder: Path) -> Manifest:
    """The bundle's manifest, format and fields checked; its file table not yet."""
    if not folder.exists():
        raise BundleError(f"model bundle not found: {folder}")
    if not folder.is_dir():
        raise BundleError(f"{folder} is a file; a model bundle is a directory with manifest.json")
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        hint = " (an unfinished training run?)" if ".partial-" in folder.name else ""
        raise BundleError(f"{folder} is not an EmoScope bundle: no {MANIFEST}{hint}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is corrupted (not valid JSON: {exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path} is not an EmoScope bundle manifest (format is {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{manifest_path}: format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise BundleError(f"{folder} was written by a newer EmoScope (bundle format {version}; this version reads up to "
                          f"{FORMAT_VERSION}); upgrade EmoScope to load it")
    return Manifest.from_dict(manifest, str(manifest_path))


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
"""File types that can hold pickled objects: a bundle holds none (weights are safetensors)."""


def _check_files(folder: Path, files: dict[str, Any], verify: bool) -> None:
    pickles = [rel for rel in files if rel.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise BundleError(f"{folder}: '{pickles[0]}' is a pickle-format file; EmoScope bundles hold weights only as "
                          "safetensors and never unpickle anything")
    for rel, info in files.items():
        path = folder / rel
        if not path.resolve().is_relative_to(folder.resolve()):
            raise BundleError(f"{folder / MANIFEST}: file entry '{rel}' points outside the bundle")
        if not path.is_file():
            raise BundleError(f"{folder}: file '{rel}' is missing; the bundle is incomplete, retrain or copy it again")
        size = path.stat().st_size
        if size != info.get("size"):
            raise BundleError(f"{folder}: file '{rel}' is {size} bytes, the manifest says {info.get('size')} "
                              "(truncated or replaced); retrain or copy the bundle again")
        if verify and sha256_file(path) != info.get("sha256"):
            raise BundleError(f"{folder}: file '{rel}' does not match its sha256 in the manifest (corrupted or modified)")


def read_validation(folder: str | Path, manifest: Manifest) -> ValidationData | None:
    """The bundle's validation texts, gold labels and probabilities, if it stored them."""
    path = Path(folder) / VALIDATION
    if not path.exists():
        return None
    try:
        return ValidationData.from_json(json.loads(path.read_text(encoding="utf-8")), manifest.n_labels)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is corrupted: {exc}") from exc


def read_training_log(folder: str | Path) -> list[dict[str, Any]]:
    """The bundle's training log, one dict per epoch (empty when it has none)."""
    path = Path(folder) / LOG
    if not path.exists():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is corrupted: {exc}") from exc
    return [row for row in rows if isinstance(row, dict)]


def update_thresholds(folder: str | Path, thresholds: Iterable[float]) -> None:
    """Replace a bundle's thresholds in its manifest (atomic rename of the manifest file); a
    bundle with a model card gets its card rewritten with them."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)
    values = [float(t) for t in thresholds]
    if len(values) != manifest.n_labels or not all(0.0 <= t <= 1.0 for t in values):
        raise BundleError(f"need one threshold in [0, 1] for each of the {manifest.n_labels} labels")
    manifest = dataclasses.replace(manifest, thresholds=values)
    _replace_manifest(folder, _with_card(folder, manifest) if CARD in manifest.files else manifest)


def update_path_thresholds(folder: str | Path, path: str, record: PathThresholds) -> None:
    """Record the thresholds tuned for scoring path ``path`` in the manifest (replacing any before,
    atomic rename of the manifest file); the bundle's own thresholds, files and card stay as they are."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)
    manifest = dataclasses.replace(manifest, path_thresholds={**(manifest.path_thresholds or {}), path: record})
    Manifest.from_dict(manifest.to_dict(), str(folder / MANIFEST))  # one per label in [0, 1], as read back
    _replace_manifest(folder, manifest)


def add_card(folder: str | Path) -> list[str]:
    """(Re)write a bundle's model card and list it in the manifest's file table (bundles trained
    before cards existed); returns the card's files. A bundle whose other files fail
    verification is refused; the manifest is replaced atomically, as by ``update_thresholds``."""
    folder = Path(folder)
    manifest = _parse_manifest(folder)
    _check_files(folder, {rel: info for rel, info in manifest.files.items() if rel not in CARD_FILES}, verify=True)
    manifest = _with_card(folder, manifest)
    _replace_manifest(folder, manifest)
    return [rel for rel in CARD_FILES if rel in manifest.files]


def _with_card(folder: Path, manifest: Manifest) -> Manifest:
    """Write the card of ``manifest`` into the bundle; the manifest with the card's file entries."""
    written = write_card(folder, manifest, read_validation(folder, manifest), read_training_log(folder))
    files = {rel: info for rel, info in manifest.files.items() if rel not in CARD_FILES}
    return dataclasses.replace(manifest, files={**files, **{rel: _file_entry(folder / rel) for rel in written}})


def _replace_manifest(folder: Path, manifest: Manifest) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    _write_json(tmp, manifest.to_dict())
    os.replace(tmp, folder / MANIFEST)


def manifest_mtime(folder: str | Path) -> float:
    """When the bundle's manifest last changed (retrained, thresholds saved): caches of a loaded
    bundle key on it, so a changed bundle loads afresh."""
    return (Path(folder) / MANIFEST).stat().st_mtime


def find_bundles(models_dir: str | Path) -> list[Path]:
    """Bundle directories directly under ``models_dir`` (those with a manifest), newest first."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()]
    return sorted(found, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)
