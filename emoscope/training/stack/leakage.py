"""The leakage gate of stage 2: no stage-1 model reads a text it was trained on, unless asked.

Out-of-fold stacking is only honest if the meta-learner never trains on vectors that an encoder
computed for a text it was fine-tuned on. Every text stage 2 reads through a stage-1 model passes
:func:`check_not_trained_on` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from emoscope.errors import EmoScopeError

if TYPE_CHECKING:
    from emoscope.training.stack.stage1 import StageOneModel


class LeakageError(EmoScopeError):
    """A stage-1 model was asked to read a text it was fine-tuned on, in out-of-fold mode."""


def check_not_trained_on(model: StageOneModel, keys: Sequence[str], *, allow_seen: bool = False) -> None:
    """Refuse (``LeakageError``) to let ``model`` read any of the texts ``keys`` that it was trained
    on. ``allow_seen`` is for the naive stacking variant, which reads training texts with the
    encoder fine-tuned on them on purpose."""
    if allow_seen:
        return
    seen = [k for k in keys if k in model.trained_on]
    if seen:
        raise LeakageError(f"{model.encoder}/{model.role} was fine-tuned on {len(seen)} of the {len(keys)} texts it "
                           "was asked to embed; out-of-fold stacking must use a model that never saw them")
