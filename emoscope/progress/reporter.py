"""The reporter training code calls, and the sinks its events go to.

A :class:`Reporter` turns each call into one event (a flat JSON-ready dict with ``event`` and
``t``, the Unix time) and hands it to its sinks: :class:`JsonLinesSink` appends it to a file
(what a background job leaves beside its log for the Train page), the console sink prints it
readably (``emoscope train``). Per-batch calls go through :meth:`Reporter.tick`, thinned to one
event per ``interval`` seconds per kind plus the last of each pass, so a long run writes a few
thousand lines, not millions.

The reporter in force is a context variable: training code asks for :func:`current` and never
receives one as a parameter; :func:`reporting` installs one for a block and reports the block's
failure as one line. Outside such a block the current reporter has no sinks and every call
returns at once, so training without a reporter computes exactly what it did before.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from emoscope.errors import EmoScopeError

Event = dict[str, Any]
Sink = Callable[[Event], None]

MAX_REASON = 300


class Reporter:
    """Sends progress events to its sinks; with none, every call is a no-op."""

    def __init__(self, *sinks: Sink, interval: float = 1.0, clock: Callable[[], float] = time.time):
        self.sinks = list(sinks)
        self.interval = interval
        self.clock = clock
        self._last_tick: dict[str, float] = {}

    def emit(self, event: str, **fields: Any) -> None:
        """One event to every sink."""
        if not self.sinks:
            return
        record = {"event": event, "t": round(self.clock(), 3), **fields}
        for sink in self.sinks:
            sink(record)

    def tick(self, event: str, done: int, total: int, **fields: Any) -> None:
        """A per-batch event (``done`` of ``total`` in the current pass): sent when ``interval``
        seconds have passed since the last one of this kind, and always for the pass's last."""
        if not self.sinks:
            return
        now = self.clock()
        if done < total and now - self._last_tick.get(event, -math.inf) < self.interval:
            return
        self._last_tick[event] = now
        self.emit(event, done=done, total=total, **fields)


_NULL = Reporter()
_CURRENT: ContextVar[Reporter] = ContextVar("emoscope_progress", default=_NULL)


def current() -> Reporter:
    """The reporter in force (one without sinks outside :func:`reporting`)."""
    return _CURRENT.get()


def one_line(exc: BaseException) -> str:
    """Why a run stopped, in one line: a user-caused error's own message, else the exception's
    type and the first line of its message."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = message if isinstance(exc, EmoScopeError) and message else f"{type(exc).__name__}: {message}".rstrip(": ")
    return line if len(line) <= MAX_REASON else line[:MAX_REASON - 1] + "…"


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Make ``reporter`` the current one inside the block; an exception leaving the block is
    reported as a ``failed`` event with a one-line ``reason`` and raised again."""
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    except BaseException as exc:
        reporter.emit("failed", reason=one_line(exc))
        raise
    finally:
        _CURRENT.reset(token)


class JsonLinesSink:
    """Appends each event to ``path`` as one JSON line. The file is opened for each event (a few
    a second at most), so every finished line is on disk for a reader in another process and no
    handle outlives the run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: Event) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(event, ensure_ascii=False) + "\n")


def read_events(path: str | Path) -> list[Event]:
    """The events of a JSON-lines file; a line still being written (or damaged) is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events
