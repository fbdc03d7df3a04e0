"""Where a training run stands, folded from its progress events.

:class:`RunState` applies the events one by one (:func:`fold`): the plan, the stage, the stage-1
model being fine-tuned, every epoch (stage 1 and the meta-learner), the last batch tick, the
stage-2 read under way and the texts each encoder has read, and how the run ended. The ETA
(:mod:`emoscope.progress.eta`), the console lines, ``emoscope.jobs.status`` and the Train page
all read it; :func:`describe` is its one-line summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from emoscope.progress.reporter import Event

STAGE_TITLES = {"fine-tune": "fine-tuning", "embed": "embedding", "meta": "meta-learner",
                "finish": "scoring and writing the bundle"}


def model_title(encoder: str, role: str, folds: int | None) -> str:
    """``me5-ft, fold 2 of 3`` / ``me5-ft, full (all training texts)`` / ``me5-ft`` (pretrained)."""
    if role.startswith("fold-"):
        return f"{encoder}, fold {role[5:]} of {folds}" if folds else f"{encoder}, {role}"
    if role == "full":
        return f"{encoder}, full (all training texts)"
    return encoder


def series_label(event: Event, stacked: bool) -> str:
    """The curve an epoch belongs to on the charts: each stage-1 model, or the meta-learner."""
    if event.get("stage") == "meta":  # a member of a meta-learner ensemble has its own curve
        return "meta-learner" if event.get("members") is None else f"meta-learner {event['member'] + 1} of {event['members']}"
    encoder, role = event.get("encoder") or "model", event.get("role") or "full"
    return f"{encoder} {role}" if stacked else encoder


@dataclass
class Reads:
    """What one encoder has read in stage 2: texts (of ``planned``), how many came from the
    cache, and the seconds its finished reads took."""

    planned: int = 0
    texts: int = 0
    cached: int = 0
    seconds: float = 0.0


@dataclass
class RunState:
    """The run as its events describe it so far (see the package docstring for the events)."""

    plan: Event | None = None
    stage: str | None = None
    model: Event | None = None
    finished: set[tuple[str, str]] = field(default_factory=set)
    epochs: list[Event] = field(default_factory=list)
    batch: Event | None = None
    reading: Event | None = None
    embed_tick: Event | None = None
    reads: dict[str, Reads] = field(default_factory=dict)
    done: Event | None = None
    failed: str | None = None
    started: float | None = None
    updated: float | None = None

    @property
    def stacked(self) -> bool:
        return bool(self.plan) and self.plan.get("kind") == "stacked"

    def apply(self, event: Event) -> None:
        """Take one event into the state."""
        kind = event.get("event")
        self.updated = event.get("t", self.updated)
        if self.started is None:
            self.started = self.updated
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def _on_plan(self, e: Event) -> None:
        self.plan = e
        self.reads = {name: Reads(planned=n) for name, n in (e.get("embed") or {}).items()}

    def _on_stage(self, e: Event) -> None:
        self.stage, self.batch = e.get("name"), None

    def _on_model(self, e: Event) -> None:
        self.model, self.batch = e, None
        if e.get("reused"):
            self.finished.add((e["encoder"], e["role"]))

    def _on_model_done(self, e: Event) -> None:
        self.finished.add((e["encoder"], e["role"]))

    def _on_batch(self, e: Event) -> None:
        self.batch = {**e, "stage": self.stage}

    def _on_epoch(self, e: Event) -> None:
        if e.get("stage") != "meta" and self.model is not None:
            e = {**e, "encoder": self.model.get("encoder"), "role": self.model.get("role")}
        self.epochs.append({**e, "series": series_label(e, self.stacked)})
        self.batch = None

    def _on_embed_start(self, e: Event) -> None:
        self.reading, self.embed_tick = e, None

    def _on_embed(self, e: Event) -> None:
        self.embed_tick = e

    def _on_embedded(self, e: Event) -> None:
        reads = self.reads.setdefault(e["encoder"], Reads())
        reads.texts += int(e.get("texts", 0))
        reads.cached += int(e.get("cached", 0))
        reads.seconds += float(e.get("seconds", 0.0))
        self.reading, self.embed_tick = None, None

    def _on_done(self, e: Event) -> None:
        self.done, self.stage = e, "done"

    def _on_failed(self, e: Event) -> None:
        self.failed = str(e.get("reason") or "the run failed")

    def texts_read(self, encoder: str) -> int:
        """Texts ``encoder`` has read in stage 2, the read under way included."""
        reads = self.reads.get(encoder, Reads()).texts
        tick = self.embed_tick
        if self.reading is not None and self.reading.get("encoder") == encoder and tick is not None:
            reads += int(self.reading.get("texts", 0)) - int(tick["total"]) + int(tick["done"])  # cached + computed
        return reads

    def stage_epochs(self, stage: str) -> list[Event]:
        return [e for e in self.epochs if (e.get("stage") == "meta") == (stage == "meta")]


def fold(events: Iterable[Event]) -> RunState:
    """The state after ``events``, in order."""
    state = RunState()
    for event in events:
        state.apply(event)
    return state


def _stage_1_line(state: RunState, prefix: str) -> str:
    plan, model = state.plan or {}, state.model
    if model is None:
        return f"{prefix}fine-tuning"
    if state.stacked:
        title = model_title(model["encoder"], model["role"], plan.get("folds"))
        line = f"{prefix}fine-tuning {title} (model {model.get('index', '?')} of {model.get('of', '?')})"
    else:
        line = f"fine-tuning {model['encoder']}"
    seen = [e for e in state.stage_epochs("fine-tune") if (e.get("encoder"), e.get("role")) == (model["encoder"], model["role"])]
    epoch = len(seen) + 1 if state.batch is not None else len(seen)
    if epoch:
        line += f" · epoch {epoch}/{plan.get('epochs', '?')}"
    if state.batch is not None:
        line += f", batch {state.batch['done']}/{state.batch['total']}"
    return line


def describe(state: RunState) -> str:
    """One line: the stage, the model or encoder at work, the epoch or texts (empty before the plan)."""
    if state.failed:
        return f"failed: {state.failed}"
    if state.done is not None:
        return "done"
    if state.plan is None or state.stage is None:
        return "" if state.plan is None else "loading the data and the models"
    stages = state.plan.get("stages") or []
    index = stages.index(state.stage) + 1 if state.stage in stages else None
    prefix = f"stage {index} of {len(stages)} · " if state.stacked and index else ""
    if state.stage == "fine-tune":
        return _stage_1_line(state, prefix)
    if state.stage == "embed":
        reading = state.reading
        if reading is None:
            return f"{prefix}embedding"
        done = state.embed_tick["done"] if state.embed_tick else 0
        return (f"{prefix}embedding with {reading['encoder']} ({reading['role']}) → {reading['split']}: "
                f"{reading['texts']} texts" + (f", {done} computed" if done else ""))
    if state.stage == "meta":
        n = len(state.stage_epochs("meta"))
        return f"{prefix}meta-learner · epoch {n}/{state.plan.get('meta_epochs', '?')}"
    return STAGE_TITLES.get(state.stage, state.stage)


def summary(state: RunState) -> dict[str, Any]:
    """The state's headline figures for a status line: the last epoch's number and loss."""
    last = state.epochs[-1] if state.epochs else None
    return {"epoch": None if last is None else last.get("epoch"),
            "loss": None if last is None else last.get("train_loss")}
