"""Several processes, one run: what training and batch scoring need from ``accelerate launch``.

``accelerate launch`` (torchrun underneath) starts N copies of a command and tells each its place
in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. :func:`current_world` reads them once. With one
process (no launcher, or ``--num_processes 1``) the :class:`World` is ``SINGLE`` and nothing is
initialised: every method is the identity, so a single-process run computes exactly what it did
before this module existed (``tests/test_compat.py``). With several, Accelerate's ``PartialState``
initialises the process group (gloo on CPUs, NCCL on GPUs) with a timeout on every collective
(``EMOSCOPE_DIST_TIMEOUT_S``, default 1800 s), and one extra gloo group with a long timeout
carries :meth:`World.wait`, the barrier where processes wait for uneven work (one stage-1 model
each, a file part each, the bundle the main process writes). A process the launcher stops with
SIGTERM (because another one died) raises ``SystemExit`` so that partial files and folders are
removed by the ``finally`` blocks that own them (``fsutil.atomic_directory``).

What each piece does with it: ``training.classifier`` trains one model with DDP (each process a
slice of every batch, gradients averaged by DDP, validation scored in slices and gathered, one
early-stop decision); ``training.stack.parallel`` hands each process whole stage-1 fits and
stage-2 encoders; ``sharded`` scores every N-th chunk of a file and merges the parts.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn

from emoscope.errors import ConfigError, EmoScopeError
from emoscope.models.runtime import cuda_bf16, pick_device

TIMEOUT_ENV = "EMOSCOPE_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0
WAIT_TIMEOUT = timedelta(days=7)
"""How long :meth:`World.wait` waits for the slowest process (a stage-1 fit can take hours); a
process that dies is noticed sooner: its sockets close, and the launcher stops the others."""


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (``rank`` 0 is the main one)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str = "auto") -> torch.device:
        """``pick_device(requested)``, with each process on its own GPU (``cuda:LOCAL_RANK``)."""
        device = pick_device(requested)
        if self.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        return device

    def mine(self, n: int) -> np.ndarray:
        """The items of ``n`` this process handles: every ``size``-th from ``rank``."""
        return np.arange(self.rank, n, self.size)

    def shard_batch(self, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """This process's slice of one global batch and the factor its mean loss is scaled by,
        so that DDP's average of the processes' gradients is the gradient of the whole batch's
        mean loss. A process left without an example (a batch smaller than the world) reads one
        with factor 0: DDP needs every process in every backward pass."""
        if not self.distributed:
            return idx, 1.0
        part = idx[self.rank::self.size]
        if len(part) == 0:
            return idx[:1], 0.0
        return part, len(part) * self.size / len(idx)

    def gather_rows(self, rows: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
        """Every process's ``rows`` (at ``positions`` of ``n``) put together, on every process."""
        if not self.distributed:
            return rows
        pieces: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(pieces, (positions, rows))
        out = np.zeros((n, *rows.shape[1:]), dtype=rows.dtype)
        for where, part in pieces:
            out[where] = part
        return out

    def agree(self, value: Any) -> Any:
        """The main process's ``value`` (any picklable object), on every process."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def total(self, counts: dict[str, int]) -> dict[str, int]:
        """``counts`` summed over the processes (each process's keys are the same)."""
        if not self.distributed:
            return counts
        pieces: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(pieces, counts)
        return {k: sum(p[k] for p in pieces) for k in counts}

    def wait(self) -> None:
        """Wait until every process gets here (no time limit worth the name: see ``WAIT_TIMEOUT``)."""
        if self.distributed:
            torch.distributed.barrier(group=_WAIT_GROUP[0])

    def main_first(self, action, *args, **kwargs) -> Any:
        """Run ``action`` on the main process only and hand its result to every process; an
        ``EmoScopeError`` it raises is raised on every process (so all stop with the same line)."""
        if not self.distributed:
            return action(*args, **kwargs)
        outcome: tuple[Any, BaseException | None] = (None, None)
        if self.is_main:
            try:
                outcome = (action(*args, **kwargs), None)
            except EmoScopeError as exc:
                outcome = (None, exc)
        result, error = self.agree(outcome)
        if error is not None:
            raise error
        return result

    def wrap_for_training(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` as DDP prepared by Accelerate (bf16 autocast on GPUs with native bf16, never
        fp16), or ``model`` itself in a single process. The optimiser keeps ``model``'s parameters."""
        if not self.distributed:
            return model
        from accelerate import Accelerator  # heavy, and only a multi-process run needs it

        accelerator = Accelerator(mixed_precision="bf16" if cuda_bf16(device) else "no",
                                  cpu=device.type == "cpu")
        return accelerator.prepare_model(model)


def save_alone(model: nn.Module) -> None:
    """Let this process write ``model``'s checkpoints whatever its rank. transformers 5 writes a
    ``save_pretrained`` checkpoint's config only on rank 0 of an initialised process group (right
    for one model all processes trained, wrong for a stage-1 model this process alone trained);
    outside a process group this changes nothing."""
    for module in model.modules():
        if hasattr(module, "should_save_on_this_rank"):
            module.should_save_on_this_rank = _save_if_asked  # an instance attribute shadows the method


def _save_if_asked(is_main_process: bool = True) -> bool:
    return is_main_process


SINGLE = World()
_WORLD: list[World] = []
_WAIT_GROUP: list[Any] = []


def timeout_s() -> float:
    """``EMOSCOPE_DIST_TIMEOUT_S`` (a positive number of seconds; ``ConfigError`` otherwise)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def current_world() -> World:
    """This process's :class:`World`, from the launcher's environment; the process group is set
    up on the first call of a multi-process run (every process must make it)."""
    if _WORLD:
        return _WORLD[0]
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        _WORLD.append(SINGLE)
        return SINGLE
    from accelerate import PartialState  # heavy, and only a multi-process run needs it

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s()))
    _WAIT_GROUP.append(torch.distributed.new_group(backend="gloo", timeout=WAIT_TIMEOUT))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    world = World(rank=state.process_index, size=state.num_processes, local_rank=state.local_process_index)
    _WORLD.append(world)
    return world


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)
