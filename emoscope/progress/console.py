"""Progress events as readable lines for ``emoscope train`` (and so for a background job's log).

Stage 1's epochs already have their own log line; this sink adds what the log lacks: the plan,
which stage-1 model of how many, the embedding of stage 2 (texts read per encoder, texts per
second), each meta-learner epoch of stage 3, and the ETA. Batch-level lines are thinned to one
per ``interval`` seconds so a terminal or a log stays readable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from emoscope.progress.eta import eta_seconds, format_eta
from emoscope.progress.reporter import Event
from emoscope.progress.state import STAGE_TITLES, RunState, model_title


def plan_line(plan: Event) -> str:
    """The whole run in one line, before it starts."""
    texts = plan.get("texts", {})
    sizes = f"{texts.get('train', 0)} training texts, {texts.get('validation', 0)} validation"
    sizes += f", {texts['eval']} eval" if texts.get("eval") else ""
    models = plan.get("models") or []
    if plan.get("kind") != "stacked":
        return f"[plan] fine-tune {models[0]['encoder'] if models else 'the encoder'} for up to {plan.get('epochs')} epochs; {sizes}"
    encoders = ", ".join(f"{e['name']} ({'fine-tuned' if e.get('fine_tune') else 'frozen'})"
                         for e in plan.get("encoders", []))
    reads = sum((plan.get("embed") or {}).values())
    return (f"[plan] stacked: {encoders}; stage 1: {len(models)} model(s) × up to {plan.get('epochs')} epochs"
            f"{' (' + str(plan['folds']) + ' folds)' if plan.get('folds') else ''}; stage 2: {reads} texts to read; "
            f"stage 3: up to {plan.get('meta_epochs')} meta-learner epochs; {sizes}")


class ConsoleSink:
    """Prints the events ``emoscope train`` has no line for, with the ETA."""

    def __init__(self, write: Callable[[str], None] = print, interval: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self.write, self.interval, self.clock = write, interval, clock
        self.state = RunState()
        self._last_tick = -math.inf

    def __call__(self, event: Event) -> None:
        self.state.apply(event)
        line = getattr(self, f"_{event['event']}", lambda _e: None)(event)
        if line:
            self.write(line)

    def _eta(self) -> str:
        eta = format_eta(eta_seconds(self.state, self.clock()))
        return f" · {eta}" if eta else ""

    def _thinned(self) -> bool:
        """True when a batch-level line is due: the first, then one per ``interval`` (a pass's end
        has its own line already)."""
        now = self.clock()
        if now - self._last_tick < self.interval:
            return False
        self._last_tick = now
        return True

    def _plan(self, e: Event) -> str:
        return plan_line(e)

    def _stage(self, e: Event) -> str | None:
        if not self.state.stacked or e.get("name") not in ("fine-tune", "embed", "meta"):
            return None
        return f"[stage {e.get('index')} of {e.get('of')}] {STAGE_TITLES[e['name']]}{self._eta()}"

    def _model(self, e: Event) -> str | None:
        if not self.state.stacked:
            return None
        title = model_title(e["encoder"], e["role"], (self.state.plan or {}).get("folds"))
        reused = " (finished earlier: reused)" if e.get("reused") else ""
        return f"[stage 1] model {e.get('index')} of {e.get('of')}: {title}{reused}{self._eta()}"

    def _batch(self, e: Event) -> str | None:
        if self.state.stage != "fine-tune" or not self._thinned():
            return None
        speed = e["texts"] / e["seconds"] if e.get("seconds") else 0.0
        return f"[progress] batch {e['done']}/{e['total']}, {speed:.1f} texts/s{self._eta()}"

    def _epoch(self, e: Event) -> str | None:
        if e.get("stage") != "meta":
            eta = self._eta()
            return f"[progress] epoch {e['epoch']}/{e.get('epochs')} done{eta}" if eta else None
        return (f"[stage 3] epoch {e['epoch']}/{e.get('epochs')}: loss {e['train_loss']:.4f} | "
                f"val macro-F1 {e['val_macro_f1']:.4f} | {e.get('seconds', 0):.1f}s{self._eta()}")

    def _embed(self, e: Event) -> str | None:
        reading = self.state.reading
        if reading is None or not self._thinned():
            return None
        speed = e["done"] / e["seconds"] if e.get("seconds") else 0.0
        return (f"[stage 2] {reading['encoder']}/{reading['role']} → {reading['split']}: {e['done']}/{e['total']} "
                f"texts embedded, {speed:.0f} texts/s{self._eta()}")

    def _embedded(self, e: Event) -> str | None:
        reads = self.state.reads.get(e["encoder"])
        if reads is None or not reads.planned:
            return None
        return f"[stage 2] {e['encoder']}: {reads.texts} of {reads.planned} texts read{self._eta()}"
