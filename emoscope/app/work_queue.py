"""The app's expensive work, in turn: a bounded per-process queue with a per-session limit.

LIME, Integrated Gradients, batch prediction and scoring an uploaded file take seconds to
minutes of every core; run side by side for many visitors they would starve everyone's
predictions. They go through :data:`WORK`, one :class:`WorkQueue` per server process:

* ``slots`` pieces of work run at once (``EMOSCOPE_WORK_SLOTS``, default half the CPU cores this
  process may use, at least 1), so the other half stays free for predictions, which never queue;
* first come, first served, with at most one running piece per session (``per_session`` pieces
  in all, so one running and one waiting by default), and at most ``max_waiting`` waiting in the
  process; past either limit a request is refused at once (:class:`Busy`) rather than queued;
* a waiting page shows its place in the queue, redrawn every ``POLL_S`` (:func:`turn`); each
  redraw is a Streamlit call, so a session that has gone (tab closed, rerun) stops there and
  its place is given up; a wait longer than ``EMOSCOPE_QUEUE_TIMEOUT_S`` gives up too;
* a slot is released when its work ends, fails or is stopped (``try``/``finally``): work in a
  session that leaves stops at its next progress report, which is also a Streamlit call.

:class:`WorkQueue` itself knows no Streamlit (tested with plain threads); :func:`turn` is what
the pages use.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

POLL_S = 0.5
T = TypeVar("T")


class Busy(Exception):
    """The request was refused: this session has as much work queued as it may, or the queue is full."""


class QueueTimeout(Exception):
    """The request waited longer than its timeout for a slot and gave up its place."""


@dataclass(eq=False)
class Ticket:
    """One request: whose it is, what it is, when it came, and whether it holds a slot."""
    session: str
    label: str
    since: float = field(default_factory=time.monotonic)
    running: bool = False


def default_slots() -> int:
    """``EMOSCOPE_WORK_SLOTS``, else half the cores this process may run on (at least 1)."""
    if os.environ.get("EMOSCOPE_WORK_SLOTS"):
        return max(1, int(os.environ["EMOSCOPE_WORK_SLOTS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, cores // 2)


def queue_timeout_s() -> float:
    """How long a request waits for a slot before it gives up (``EMOSCOPE_QUEUE_TIMEOUT_S``, default 600)."""
    return float(os.environ.get("EMOSCOPE_QUEUE_TIMEOUT_S", 600))


class WorkQueue:
    """``slots`` pieces of work at once, first come first served, one running per session."""

    def __init__(self, slots: int, per_session: int = 2, max_waiting: int = 32) -> None:
        if slots < 1 or per_session < 1 or max_waiting < 0:
            raise ValueError("slots and per_session must be at least 1, max_waiting at least 0")
        self.slots, self.per_session, self.max_waiting = slots, per_session, max_waiting
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._changed = threading.Condition()

    def enter(self, session: str, label: str) -> Ticket:
        """Join the queue (a slot at once when one is free); :class:`Busy` past a limit."""
        with self._changed:
            mine = sum(t.session == session for t in self._waiting + self._running)
            if mine >= self.per_session:
                raise Busy(f"you already have {mine} piece(s) of work running or waiting; wait for them to finish")
            if len(self._waiting) >= self.max_waiting:
                raise Busy(f"the server is busy ({len(self._waiting)} requests waiting); try again in a minute")
            ticket = Ticket(session, label)
            self._waiting.append(ticket)
            self._grant()
            return ticket

    def _grant(self) -> None:
        """Give free slots to the oldest waiting tickets whose session runs nothing yet."""
        for ticket in list(self._waiting):
            if len(self._running) >= self.slots:
                break
            if not any(t.session == ticket.session for t in self._running):
                self._waiting.remove(ticket)
                ticket.running = True
                self._running.append(ticket)
        self._changed.notify_all()

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for ``ticket`` to get a slot; whether it has one."""
        with self._changed:
            return self._changed.wait_for(lambda: ticket.running, timeout)

    def position(self, ticket: Ticket) -> int:
        """0 when running, else the ticket's place among the waiting (1 = next)."""
        with self._changed:
            return 0 if ticket.running else self._waiting.index(ticket) + 1 if ticket in self._waiting else -1

    def leave(self, ticket: Ticket) -> None:
        """Give up the ticket's slot or its place in the queue (idempotent)."""
        with self._changed:
            for queue in (self._running, self._waiting):
                if ticket in queue:
                    queue.remove(ticket)
            ticket.running = False
            self._grant()

    def counts(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._changed:
            return len(self._running), len(self._waiting)

    @contextmanager
    def slot(self, session: str, label: str, on_wait: Callable[[int, int], None] | None = None,
             timeout_s: float = 600.0, poll_s: float = POLL_S) -> Iterator[Ticket]:
        """Hold a slot for the ``with`` body. While waiting, ``on_wait(position, waiting)`` is called
        every ``poll_s``; whatever it raises (a session that went away) gives up the place, as does
        a wait past ``timeout_s`` (:class:`QueueTimeout`). The slot is released however the body ends."""
        ticket = self.enter(session, label)
        try:
            deadline = time.monotonic() + timeout_s
            while not self.wait(ticket, poll_s):
                if on_wait is not None:
                    on_wait(self.position(ticket), self.counts()[1])
                if time.monotonic() > deadline:
                    raise QueueTimeout(f"still number {self.position(ticket)} in the queue after {timeout_s:.0f} s")
            yield ticket
        finally:
            self.leave(ticket)


WORK = WorkQueue(default_slots())


def session_id() -> str:
    """This Streamlit session's id (one string for code running outside a session)."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


@contextmanager
def turn(label: str, queue: WorkQueue | None = None) -> Iterator[None]:
    """Run the ``with`` body in this session's turn, showing its place in the queue meanwhile.

    Refused (:class:`Busy`) or given up (:class:`QueueTimeout`), the page says why and stops."""
    queue = queue or WORK
    note = st.empty()
    started = time.monotonic()

    def waiting(position: int, waiting: int) -> None:
        note.info(f"⏳ {label}: waiting for a free slot — you are number {position} of {waiting} in the queue "
                  f"({queue.slots} at a time on this server) · {time.monotonic() - started:.0f} s")

    try:
        with queue.slot(session_id(), label, on_wait=waiting, timeout_s=queue_timeout_s()):
            note.empty()
            yield
    except (Busy, QueueTimeout) as exc:
        note.empty()
        st.warning(f"{label} did not start: {exc}.")
        st.stop()


def in_turn(label: str, work: Callable[[], T], queue: WorkQueue | None = None) -> T:
    """``work()`` run in this session's turn (:func:`turn`)."""
    with turn(label, queue):
        return work()
