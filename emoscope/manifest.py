"""A bundle's ``manifest.json`` as typed records: validated on read, built in one place.

:class:`Manifest` is what every reader of a bundle gets (``bundle.read_manifest``); nothing else
walks the JSON's keys. It round-trips: keys this version does not know are kept in ``extra`` and
written back, so a threshold update never loses what a newer or older EmoScope recorded.
:func:`build_manifest` is the one builder both training paths call.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from emoscope.data import data_summary
from emoscope.errors import BundleError
from emoscope.text import NormalizerConfig

FORMAT = "emoscope-bundle"
FORMAT_VERSION = 1


def _record_from(cls: type, raw: Any, where: str) -> Any:
    """Build a record dataclass from a JSON object: known keys become fields, the rest ``extra``;
    a field of the wrong JSON type is a ``BundleError`` naming it."""
    if not isinstance(raw, dict):
        raise BundleError(f"{where} must be a JSON object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)} - {"extra"}
    for key in known & raw.keys():
        if not _json_type_ok(raw[key], hints[key]):
            raise BundleError(f"{where}: '{key}' has the wrong type ({type(raw[key]).__name__})")
    missing = sorted(f.name for f in fields(cls) if f.name in known and f.name not in raw
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise BundleError(f"{where}: required field '{missing[0]}' is missing")
    return cls(**{k: raw[k] for k in known if k in raw}, extra={k: v for k, v in raw.items() if k not in known})


def _json_type_ok(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the outer type a field's annotation asks for (records are checked
    when they are built; numbers may be ints where floats are asked for)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_json_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any or dataclasses.is_dataclass(hint):
        return True
    origin = typing.get_origin(hint) or hint
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)


def _inside(path: str | None) -> bool:
    """A path inside the bundle: relative, with no ``..`` part."""
    return path is None or (not PurePosixPath(path).is_absolute() and ".." not in PurePosixPath(path).parts
                            and "\\" not in path)


def _one_per_label(thresholds: Any, n_labels: int) -> bool:
    """Whether ``thresholds`` is a list of one number in [0, 1] per label."""
    return isinstance(thresholds, list) and len(thresholds) == n_labels and all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0 for t in thresholds)


def _record_to(record: Any) -> dict[str, Any]:
    """The JSON object of a record: its fields that are set, then the keys it kept unread."""
    out = {f.name: getattr(record, f.name) for f in fields(record)
           if f.name != "extra" and getattr(record, f.name) is not None}
    for key, value in out.items():
        if dataclasses.is_dataclass(value):
            out[key] = _record_to(value)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            out[key] = [_record_to(v) for v in value]
        elif isinstance(value, dict) and value and all(dataclasses.is_dataclass(v) for v in value.values()):
            out[key] = {k: _record_to(v) for k, v in value.items()}
    return {**out, **record.extra}


@dataclass(kw_only=True)
class EncoderEntry:
    """One base encoder of a bundle's model: where it came from and how it reads text."""

    name: str | None = None
    source: str
    offline_source: bool | None = None
    fine_tuned: bool | None = None  # absent (= fine-tuned) in single-encoder bundles
    path: str | None = None  # stacked bundles: its folder under the model path
    text_prefix: str = ""
    model_type: str | None = None
    hidden_size: int | None = None
    max_length: int | None = None
    fingerprint: str | None = None
    pooling: str | None = None
    head: bool | None = None  # stacked bundles: the meta-learner reads its classifier's logits
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_fine_tuned(self) -> bool:
        return self.fine_tuned is not False

    @property
    def label(self) -> str:
        """The name shown to users: the recipe's name, else the source's last path part."""
        return self.name or self.source.rstrip("/").split("/")[-1]


@dataclass(kw_only=True)
class ModelSpec:
    """What model a bundle holds: its kind, folder, encoders and the kind's own settings."""

    kind: str
    path: str = "model"
    pooling: str | None = None  # single-encoder
    max_length: int | None = None  # single-encoder
    n_labels: int
    max_words: int | None = None  # stacked
    word_pooling: str | None = None  # stacked
    folds: int | None = None  # stacked
    meta: dict[str, Any] | None = None  # stacked: the MetaConfig and input_sizes
    encoders: list[EncoderEntry]
    bases: list[dict[str, Any]] | None = None  # stacked: base models reading the text ({kind, name, path})
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.encoders, list) or not self.encoders:
            raise BundleError("the manifest's model lists no encoders")
        self.encoders = [e if isinstance(e, EncoderEntry) else _record_from(EncoderEntry, e, f"model.encoders[{i}]")
                         for i, e in enumerate(self.encoders)]


@dataclass(kw_only=True)
class PathThresholds:
    """Thresholds tuned on the bundle's validation texts for one scoring path other than the one
    that trained it (the bundle's own ``thresholds`` are the training path's: torch, in
    ``Manifest.precision``), with what that path changed there (``emoscope tune-fast``)."""

    thresholds: list[float]
    tuned_on: str | None = None  # "validation": the bundle's validation.json
    n_texts: int | None = None
    macro_f1: float | None = None  # this path at these thresholds, on those texts
    reference_macro_f1: float | None = None  # the training path at the bundle's thresholds, same texts
    max_abs_diff: float | None = None  # |this path's probabilities - the training path's|, over every cell
    mean_abs_diff: float | None = None
    runtime: str | None = None  # what ran it, e.g. "onnxruntime=1.31.1"
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Manifest:
    """A bundle's manifest (see ``docs/ARCHITECTURE.md``, "Bundle format")."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    name: str | None = None
    created: str | None = None
    labels: list[str]
    languages: list[str] = field(default_factory=list)
    thresholds: list[float]
    model: ModelSpec
    text: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    path_thresholds: dict[str, PathThresholds] | None = None  # by scoring path, e.g. "onnxruntime"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.path_thresholds, dict):
            self.path_thresholds = {
                name: r if isinstance(r, PathThresholds) else _record_from(PathThresholds, r, f"path_thresholds.{name}")
                for name, r in self.path_thresholds.items()}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "manifest.json") -> Manifest:
        """Validate and type a manifest's JSON; ``BundleError`` naming the first thing wrong."""
        if not isinstance(raw, dict):
            raise BundleError(f"{where} is not an EmoScope bundle manifest (format is None)")
        for key in ("labels", "thresholds", "model", "files"):
            if key not in raw:
                raise BundleError(f"{where}: required field '{key}' is missing")
        manifest = _record_from(cls, {**raw, "model": _record_from(ModelSpec, raw["model"], f"{where}: model")}, where)
        manifest._check(where)
        return manifest

    def _check(self, where: str) -> None:
        labels = self.labels
        if (not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels)
                or len(set(labels)) != len(labels)):
            raise BundleError(f"{where}: 'labels' must be a non-empty list of distinct names")
        if not _one_per_label(self.thresholds, len(labels)):
            raise BundleError(f"{where}: 'thresholds' must hold one number in [0, 1] per label")
        if self.model.n_labels != len(labels):
            raise BundleError(f"{where}: the manifest lists {len(labels)} labels but the model has {self.model.n_labels}")
        for name, record in (self.path_thresholds or {}).items():
            if not _one_per_label(record.thresholds, len(labels)):
                raise BundleError(f"{where}: path_thresholds.{name} must hold one number in [0, 1] per label")
        if not all(isinstance(v, dict) for v in self.files.values()):
            raise BundleError(f"{where}: 'files' must map file names to their size and sha256")
        paths = [("model.path", self.model.path)] + [(f"model.encoders[{i}].path", e.path)
                                                     for i, e in enumerate(self.model.encoders)]
        for i, base in enumerate(self.model.bases or []):
            if not isinstance(base, dict) or not isinstance(base.get("path"), str):
                raise BundleError(f"{where}: model.bases[{i}] must be an object with a path")
            paths.append((f"model.bases[{i}].path", base["path"]))
        for name, path in paths:
            if not _inside(path):
                raise BundleError(f"{where}: {name} '{path}' points outside the bundle; a bundle loads only its own files")

    def to_dict(self) -> dict[str, Any]:
        return _record_to(self)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def normalizer(self) -> NormalizerConfig:
        """The text normalisation the model was trained with."""
        return NormalizerConfig.from_dict(self.text)

    @property
    def precision(self) -> str:
        """The precision the model was trained (and its thresholds tuned) in; fp32 for bundles
        from before this was recorded."""
        return self.training.get("precision", "fp32")

    @property
    def train_data(self) -> str:
        """The training data's name (its spec or file)."""
        return str(self.data.get("train", "?"))

    @property
    def n_train(self) -> int | None:
        return self.data.get("n_train")

    def headline_f1(self) -> float | None:
        """Macro-F1 on the eval split, else on validation (None when neither was recorded)."""
        scored = self.metrics.get("eval") or self.metrics.get("validation") or {}
        value = scored.get("macro_f1")
        return value if isinstance(value, float) else None


def build_manifest(config: Any, data: Any, thresholds: Any, model: ModelSpec, metrics: dict[str, Any],
                   training: dict[str, Any]) -> Manifest:
    """The manifest of a bundle trained from recipe ``config`` on ``data`` (a ``TrainingData``);
    ``bundle.save_bundle`` adds the format, library versions and file table."""
    return Manifest(name=config.name, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    labels=list(data.train.label_names), languages=data.languages,
                    thresholds=[float(x) for x in thresholds], model=model, text=config.text.to_dict(),
                    config=config.to_dict(), data=data_summary(data), metrics=metrics, training=training,
                    library_versions=None, files={})
