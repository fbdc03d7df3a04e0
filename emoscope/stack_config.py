"""The sections only a stacked recipe has: ``[stack]`` (stages 1 and 2), ``[[bases]]`` (base models
that read the text themselves) and ``[meta]`` (the meta-learner, stage 3). :mod:`emoscope.config`
assembles them into a :class:`~emoscope.config.RunConfig` and re-exports them."""

from __future__ import annotations

from dataclasses import dataclass

from emoscope.errors import ConfigError
from emoscope.losses import loss_names
from emoscope.recipe_tables import require_finite

__all__ = ["BASE_KINDS", "META_POOLINGS", "NEW_TEXT_READERS", "WORD_POOLINGS", "BaseConfig", "MetaConfig", "StackConfig"]

WORD_POOLINGS = ("mean", "first")
NEW_TEXT_READERS = ("full", "fold")
META_POOLINGS = ("attention", "max", "mean")


@dataclass(frozen=True)
class StackConfig:
    """How the base encoders are stacked (stages 1 and 2 of a stacked recipe).

    ``folds`` > 1 gives out-of-fold stacking: each training text is embedded by encoders
    fine-tuned on the other folds only; 0 gives the naive variant (the encoders fine-tuned on
    all training texts embed those same texts). ``max_words`` cuts the shared word sequence the
    meta-learner reads; ``word_pooling`` turns each word's sub-word vectors into one vector.
    ``finetune_loss`` is the loss of stage 1 (the meta-learner's loss is ``[loss]``).
    ``finetune_on_extra = false`` keeps ``data.extra_train`` out of stage 1: the encoders are
    fine-tuned on ``train`` alone (the very models a recipe without the extra data trains, so
    they are reused from its work folder) and the extra texts reach only the text bases and the
    meta-learner, read by the ``full`` stage-1 model, which never saw them.
    ``new_text_reader`` says which stage-1 model of each fine-tuned encoder reads the texts no
    fold model holds out (validation, eval, the extra data left out of stage 1) and goes into the
    bundle to read new texts: ``"full"``, fine-tuned on every training text, or ``"fold"``, the
    first fold's model, so that new texts are read like the training texts the meta-learner
    learns from (by a model fine-tuned on the other folds, out of fold). Text bases always use
    their ``full`` fit.
    """

    folds: int = 3
    max_words: int = 64
    word_pooling: str = "mean"
    finetune_loss: str = "bce"
    cache_dir: str | None = None
    finetune_on_extra: bool = True
    new_text_reader: str = "full"

    def __post_init__(self) -> None:
        if self.folds == 1 or not 0 <= self.folds <= 20:
            raise ConfigError(f"stack.folds must be 0 (naive stacking) or 2..20 (out-of-fold), got {self.folds}")
        if not 1 <= self.max_words <= 1024:
            raise ConfigError(f"stack.max_words must be between 1 and 1024, got {self.max_words}")
        if self.word_pooling not in WORD_POOLINGS:
            raise ConfigError(f"stack.word_pooling must be one of {', '.join(WORD_POOLINGS)}, got '{self.word_pooling}'")
        if self.finetune_loss not in loss_names():
            raise ConfigError(f"stack.finetune_loss must be one of {', '.join(loss_names())}, got '{self.finetune_loss}'")
        if self.new_text_reader not in NEW_TEXT_READERS:
            raise ConfigError(f"stack.new_text_reader must be one of {', '.join(NEW_TEXT_READERS)}, "
                              f"got '{self.new_text_reader}'")
        if self.new_text_reader == "fold" and self.folds == 0:
            raise ConfigError("stack.new_text_reader = \"fold\" needs out-of-fold stacking (stack.folds of 2 or more)")


BASE_KINDS = ("tfidf",)


@dataclass(frozen=True)
class BaseConfig:
    """A stack's base model that reads the text itself (``[[bases]]``). ``kind = "tfidf"``: the
    TF-IDF n-gram + logistic regression reference (:class:`~emoscope.tfidf.TfidfModel`) over the
    stack's words; its logits, out of fold for training texts (the stack's folds, 5 when
    ``stack.folds = 0``), join the meta-learner's weighted sum of base classifiers' logits."""

    kind: str
    name: str = ""
    min_df: int = 2
    C: float = 1.0

    @property
    def label(self) -> str:
        return self.name or self.kind

    def __post_init__(self) -> None:
        require_finite(self, "bases")
        if self.kind not in BASE_KINDS:
            raise ConfigError(f"bases.kind must be one of {', '.join(BASE_KINDS)}, got '{self.kind}'")
        if self.name and not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"bases.name '{self.name}' may hold only letters, digits, '-', '_' and '.'")
        if self.min_df < 1:
            raise ConfigError(f"bases.min_df must be at least 1, got {self.min_df}")
        if not self.C > 0:
            raise ConfigError(f"bases.C must be > 0, got {self.C}")


@dataclass(frozen=True)
class MetaConfig:
    """The Bi-LSTM meta-learner (stage 3) and how it trains."""

    hidden_size: int = 128
    layers: int = 1
    dropout: float = 0.3
    input_dropout: float = 0.1
    pooling: str = "attention"
    dense_size: int = 128
    # also read each fine-tuned encoder's stage-1 classifier logits (out-of-fold for training
    # texts), starting from their ensemble: classic stacking of predictions next to the embeddings
    base_logits: bool = False
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    epochs: int = 40
    patience: int = 6
    # a seed ensemble: this many meta-learners, each trained alone (member i with the recipe's
    # seed + 1000 i), their logits averaged; the thresholds are tuned on the ensemble's probabilities
    ensemble: int = 1

    def __post_init__(self) -> None:
        require_finite(self, "meta")
        checks = [
            (1 <= self.hidden_size <= 4096, f"meta.hidden_size must be in 1..4096, got {self.hidden_size}"),
            (1 <= self.layers <= 8, f"meta.layers must be in 1..8, got {self.layers}"),
            (0 <= self.dropout < 1, f"meta.dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.input_dropout < 1, f"meta.input_dropout must be in [0, 1), got {self.input_dropout}"),
            (self.pooling in META_POOLINGS, f"meta.pooling must be one of {', '.join(META_POOLINGS)}, got '{self.pooling}'"),
            (0 <= self.dense_size <= 8192, f"meta.dense_size must be in 0..8192 (0 = no hidden dense layer), "
                                           f"got {self.dense_size}"),
            (0 < self.lr <= 1, f"meta.lr must be > 0 and at most 1, got {self.lr}"),
            (self.weight_decay >= 0, f"meta.weight_decay must be >= 0, got {self.weight_decay}"),
            (self.batch_size >= 1, f"meta.batch_size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"meta.epochs must be >= 1, got {self.epochs}"),
            (self.patience >= 1, f"meta.patience must be >= 1, got {self.patience}"),
            (1 <= self.ensemble <= 16, f"meta.ensemble must be in 1..16 (meta-learners averaged), got {self.ensemble}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
