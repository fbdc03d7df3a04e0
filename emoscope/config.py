"""Typed, validated training recipes: what data, which encoder, how to train, which loss.

A recipe is a TOML (or JSON) file in ``training/configs/``. Each section maps to one frozen
dataclass validated in ``__post_init__``; unknown keys and wrong types are errors that
name the key, so a typo never silently falls back to a default. ``RunConfig.to_dict()``
round-trips through ``RunConfig.from_dict()`` and is what a bundle stores.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoscope.errors import ConfigError
from emoscope.losses import LossConfig  # the [loss] section lives with the losses it names
from emoscope.recipe_tables import build, check_seed, reject_unknown, require_finite, typed
from emoscope.stack_config import BaseConfig, MetaConfig, StackConfig  # a stacked recipe's own sections
from emoscope.text import NormalizerConfig

__all__ = ["BaseConfig", "DataConfig", "EncoderConfig", "LossConfig", "MetaConfig", "RunConfig", "StackConfig", "ThresholdConfig",
           "TrainingConfig", "load_config"]

POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class DataConfig:
    """Which examples to train on and what to validate on.

    ``validation`` is a dataset spec, or ``holdout:F`` to hold out a label-stratified
    fraction F of ``train`` (early stopping and thresholds then never see the ``eval`` set).
    ``eval`` is reported after training (e.g. the official dev split).
    Each of ``train``, ``validation`` and ``eval`` may be a list of specs: the datasets are
    combined over the union of their labels, and a label a dataset does not annotate is masked
    out of the loss, the thresholds and the metrics (e.g. SemEval-2018 ar + en in one model).
    ``max_train``/``max_validation`` cut each set to a seeded, stratified subset (for smoke runs).
    ``extra_train``: more training data, added after the hold-out is taken and restricted to
    ``train``'s labels (a label of ``train`` an extra set lacks is masked for its texts), so a model of one target
    trains on, e.g., every Arabic set while its validation, thresholds and labels stay the target's.
    """

    train: str | tuple[str, ...]
    validation: str | tuple[str, ...] = "holdout:0.15"
    eval: str | tuple[str, ...] | None = None
    data_root: str | None = None
    max_train: int | None = None
    max_validation: int | None = None
    max_eval: int | None = None
    extra_train: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("train", "validation", "eval", "extra_train"):
            value = getattr(self, name)
            specs = (value,) if isinstance(value, str) else value
            if value is not None and (not specs or any(not spec.strip() for spec in specs)):
                raise ConfigError(f"data.{name}: give a dataset spec such as 'brighter:eng:train', or a list of them")
        if isinstance(self.validation, str) and self.validation.startswith("holdout:"):
            fraction = self.holdout_fraction
            if fraction is None or not 0.0 < fraction < 0.5:
                raise ConfigError(f"data.validation: '{self.validation}' must be holdout:F with 0 < F < 0.5")
        for name in ("max_train", "max_validation", "max_eval"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ConfigError(f"data.{name} must be at least 2, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """The section as a table (``extra_train`` only when set: older recipes record what they did)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "extra_train" or v is not None}

    @property
    def holdout_fraction(self) -> float | None:
        if not isinstance(self.validation, str) or not self.validation.startswith("holdout:"):
            return None
        try:
            return float(self.validation.split(":", 1)[1])
        except ValueError:
            return None


@dataclass(frozen=True)
class EncoderConfig:
    """One base encoder: where its weights come from and how its tokens become one vector.

    ``fine_tune = false`` keeps the pretrained weights (frozen mode: in a stack only the
    meta-learner trains; alone, only the linear head does). ``name`` labels the encoder in a
    stack (default: the source's last path part). ``seed`` overrides ``training.seed`` for this
    encoder's fine-tuning: two copies of one model with different seeds make a seed ensemble
    inside a stack (the diversity the Arabic stacks get when only one Arabic encoder exists).
    ``train_layers = N`` fine-tunes only the top N layers (0: all; :mod:`emoscope.training.top_layers`).
    """

    source: str
    pooling: str = "mean"
    max_length: int = 128
    freeze_embeddings: bool = False
    dropout: float = 0.1
    fine_tune: bool = True
    name: str = ""
    seed: int | None = None  # fine-tuning seed of this encoder (default: training.seed)
    train_layers: int = 0  # fine-tune only the top N layers (0: all)

    @property
    def label(self) -> str:
        return self.name or self.source.rstrip("/").split("/")[-1]

    def __post_init__(self) -> None:
        require_finite(self, "encoder")
        if self.name and not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"encoder.name '{self.name}' may hold only letters, digits, '-', '_' and '.'")
        if not self.source.strip():
            raise ConfigError("encoder.source: give an offline name (minilm-l6, me5-small, mpnet-base), a directory or a hub id")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"encoder.pooling must be one of {', '.join(POOLINGS)}, got '{self.pooling}'")
        if not 8 <= self.max_length <= 4096:
            raise ConfigError(f"encoder.max_length must be between 8 and 4096, got {self.max_length}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"encoder.dropout must be in [0, 1), got {self.dropout}")
        if self.seed is not None:
            check_seed(self.seed, "encoder.seed")
        if isinstance(self.train_layers, bool) or not isinstance(self.train_layers, int) or self.train_layers < 0:
            raise ConfigError(f"encoder.train_layers must be a whole number ≥ 0 (0 trains every layer), got {self.train_layers!r}")
        if self.train_layers and not self.fine_tune:
            raise ConfigError(f"encoder '{self.label}': train_layers = {self.train_layers} needs fine_tune = true")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedule and stopping. Defaults follow the usual BERT fine-tuning recipe."""

    lr: float = 2e-5
    head_lr: float | None = None
    weight_decay: float = 0.01
    batch_size: int = 16
    eval_batch_size: int = 64
    epochs: int = 10
    warmup_ratio: float = 0.1
    patience: int = 3
    grad_clip: float = 1.0
    seed: int = 13
    weighted_sampling: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        require_finite(self, "training")
        check_seed(self.seed, "training.seed")
        checks = [
            (0 < self.lr <= 1, f"training.lr must be > 0 and at most 1, got {self.lr}"),
            (self.head_lr is None or 0 < self.head_lr <= 1, f"training.head_lr must be > 0 and at most 1, got {self.head_lr}"),
            (self.weight_decay >= 0, f"training.weight_decay must be >= 0, got {self.weight_decay}"),
            (self.batch_size >= 1, f"training.batch_size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"training.eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.epochs >= 1, f"training.epochs must be >= 1, got {self.epochs}"),
            (0 <= self.warmup_ratio < 1, f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.patience >= 1, f"training.patience must be >= 1, got {self.patience}"),
            (self.grad_clip >= 0, f"training.grad_clip must be >= 0 (0 = off), got {self.grad_clip}"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"training.device must be auto, cpu or cuda[:N], got '{self.device}'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass(frozen=True)
class ThresholdConfig:
    """Per-class thresholds: tuned on the validation set (max F1 per class) or fixed."""

    tune: bool = True
    fallback: float = 0.5

    def __post_init__(self) -> None:
        require_finite(self, "thresholds")
        if not 0.0 < self.fallback < 1.0:
            raise ConfigError(f"thresholds.fallback must be in (0, 1), got {self.fallback}")


@dataclass(frozen=True)
class RunConfig:
    """A whole training recipe."""

    name: str
    data: DataConfig
    encoders: tuple[EncoderConfig, ...]
    description: str = ""
    text: NormalizerConfig = field(default_factory=NormalizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    stack: StackConfig | None = None
    meta: MetaConfig = field(default_factory=MetaConfig)
    bases: tuple[BaseConfig, ...] = ()  # stacked: base models that read the text (TF-IDF)

    def __post_init__(self) -> None:
        require_finite(self.loss, "loss")  # the [loss] section's own checks are about ranges
        if not self.name.strip():
            raise ConfigError("name: a recipe needs a name")
        if not self.encoders:
            raise ConfigError("encoders: give at least one encoder")
        if self.stack is None and len(self.encoders) != 1:
            raise ConfigError(f"encoders: {len(self.encoders)} encoders need a [stack] section (a single-encoder "
                              "recipe has exactly one)")
        if self.bases and self.stack is None:
            raise ConfigError("bases: [[bases]] are base models of a stacked ensemble; add a [stack] section too")
        names = [e.label for e in self.encoders] + [b.label for b in self.bases]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"encoders: the name(s) {', '.join(duplicates)} appear twice; give each encoder (and "
                              "base) a distinct name = \"...\"")

    @property
    def kind(self) -> str:
        """``stacked`` for a stacked-ensemble recipe, ``encoder-classifier`` for one fine-tuned encoder."""
        return "stacked" if self.stack is not None else "encoder-classifier"

    @property
    def encoder(self) -> EncoderConfig:
        return self.encoders[0]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "data": self.data.to_dict(),
            "encoders": [dataclasses.asdict(e) for e in self.encoders],
            "text": self.text.to_dict(),
            "training": dataclasses.asdict(self.training),
            "loss": dataclasses.asdict(self.loss),
            "thresholds": dataclasses.asdict(self.thresholds),
        }
        if self.stack is not None:
            out["stack"] = dataclasses.asdict(self.stack)
            out["meta"] = dataclasses.asdict(self.meta)
        if self.bases:  # absent when there are none, so older recipes record what they always did
            out["bases"] = [dataclasses.asdict(b) for b in self.bases]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        if not isinstance(raw, dict):
            raise ConfigError("a recipe must be a table of sections")
        known = {"name", "description", "data", "encoders", "text", "training", "loss", "thresholds", "stack", "meta",
                 "bases"}
        reject_unknown(raw, known, "recipe")
        if "data" not in raw:
            raise ConfigError("recipe: missing [data] section")
        if "meta" in raw and "stack" not in raw:
            raise ConfigError("recipe: a [meta] section configures a stacked ensemble; add a [stack] section too")
        encoders = raw.get("encoders")
        if not isinstance(encoders, list) or not encoders:
            raise ConfigError("recipe: missing [[encoders]] (give at least one encoder with a source)")
        bases = raw.get("bases", [])
        if not isinstance(bases, list):
            raise ConfigError("recipe: bases must be an array of tables ([[bases]] kind = \"tfidf\")")
        try:
            text = NormalizerConfig.from_dict(raw.get("text", {}))
        except TypeError as exc:
            raise ConfigError(f"text: {exc}") from exc
        return cls(
            name=typed(raw.get("name", ""), str, "name"),
            description=typed(raw.get("description", ""), str, "description"),
            data=build(DataConfig, raw["data"], "data"),
            encoders=tuple(build(EncoderConfig, e, f"encoders[{i}]") for i, e in enumerate(encoders)),
            text=text,
            training=build(TrainingConfig, raw.get("training", {}), "training"),
            loss=build(LossConfig, raw.get("loss", {}), "loss"),
            thresholds=build(ThresholdConfig, raw.get("thresholds", {}), "thresholds"),
            stack=build(StackConfig, raw["stack"], "stack") if "stack" in raw else None,
            meta=build(MetaConfig, raw.get("meta", {}), "meta"),
            bases=tuple(build(BaseConfig, b, f"bases[{i}]") for i, b in enumerate(bases)),
        )

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)


def load_config(path: str | Path) -> RunConfig:
    """Read a recipe from a ``.toml`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is a folder; give a recipe file (.toml)" if path.is_dir() else
                          f"recipe file not found: {path}")
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"{path}: recipes are .toml or .json files")
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
