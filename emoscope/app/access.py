"""Who may write: the shared-deployment setting and the admin unlock (needs Streamlit).

With ``EMOSCOPE_ADMIN_PASSWORD`` set (in the environment, or as a top-level key of
``.streamlit/secrets.toml``, read through ``st.secrets``) the app is in **shared** mode: every
reading page stays open to every visitor, while the actions that write — start or cancel a
training run, save thresholds into a bundle, write a model card into a bundle — need the
password, typed once per session in the admin box those pages draw (:func:`write_gate`). Without the setting (a single local user) every
action is allowed, as before.

The password is compared in constant time (``hmac.compare_digest`` over SHA-256 digests, so not
even its length leaks). Failures are limited twice: a session that fails ``MAX_FAILURES`` times
is locked out for ``LOCKOUT_S``; and every failure in the process counts towards a short
process-wide back-off (``BACKOFF_FAILURES`` within ``BACKOFF_WINDOW_S`` refuses every attempt,
from every session, for ``BACKOFF_S``), so opening new sessions does not buy more guesses. A
session that unlocked keeps a digest of the password it matched, so a changed password locks
it again. Pages draw write buttons disabled for a visitor who has not unlocked, and check
:func:`can_write` again when one is pressed (:func:`allow_write`), so a crafted request cannot
run one either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import deque

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

SETTING = "EMOSCOPE_ADMIN_PASSWORD"
MAX_FAILURES = 5
LOCKOUT_S = 15 * 60.0
BACKOFF_FAILURES, BACKOFF_WINDOW_S, BACKOFF_S = 10, 60.0, 30.0
WRITE_HELP = "Shared deployment: this writes to the server; unlock write actions with the admin password above."
_UNLOCKED, _FAILURES, _LOCKED_UNTIL = "access::unlocked", "access::failures", "access::locked_until"


class Backoff:
    """Failed attempts across the whole process: too many in a short window refuse all for a while."""

    def __init__(self, failures: int = BACKOFF_FAILURES, window_s: float = BACKOFF_WINDOW_S,
                 pause_s: float = BACKOFF_S) -> None:
        self.failures, self.window_s, self.pause_s = failures, window_s, pause_s
        self._times: deque[float] = deque()
        self._until = 0.0
        self._lock = threading.Lock()

    def wait_s(self, now: float | None = None) -> float:
        """Seconds until attempts are taken again (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(0.0, self._until - now)

    def failed(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            while self._times and self._times[0] < now - self.window_s:
                self._times.popleft()
            if len(self._times) >= self.failures:
                self._until = now + self.pause_s

    def reset(self) -> None:
        with self._lock:
            self._times.clear()
            self._until = 0.0


BACKOFF = Backoff()


def admin_secret() -> str | None:
    """The admin password, or None when none is set (a single local user: everything allowed)."""
    value = os.environ.get(SETTING)
    if value is None:
        try:
            value = st.secrets.get(SETTING)
        except StreamlitSecretNotFoundError:  # no secrets.toml at all
            value = None
    return str(value) if value else None


def shared_mode() -> bool:
    """Whether the app runs as a shared deployment (an admin password is set)."""
    return admin_secret() is not None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def matches(given: str, secret: str) -> bool:
    """``given`` is ``secret``, compared in constant time (equal-length digests)."""
    return hmac.compare_digest(_digest(given), _digest(secret))


def can_write() -> bool:
    """Whether this session may run write actions: always without the setting, else once unlocked."""
    secret = admin_secret()
    if secret is None:
        return True
    unlocked = st.session_state.get(_UNLOCKED)
    return isinstance(unlocked, bytes) and hmac.compare_digest(unlocked, _digest(secret))


def try_unlock(given: str, now: float | None = None) -> tuple[bool, str]:
    """Check a typed password for this session: (unlocked, what to tell the visitor)."""
    secret = admin_secret()
    if secret is None:
        return True, "No admin password is set: every action is open."
    now = time.monotonic() if now is None else now
    locked = st.session_state.get(_LOCKED_UNTIL, 0.0) - now
    if locked > 0:
        return False, f"Too many wrong passwords: this session is locked for {locked / 60:.0f} more minute(s)."
    wait = BACKOFF.wait_s(now)
    if wait > 0:
        return False, f"Too many wrong passwords on this server just now: try again in {wait:.0f} s."
    if matches(given, secret):
        st.session_state[_UNLOCKED] = _digest(secret)
        st.session_state[_FAILURES] = 0
        return True, "Write actions unlocked for this session."
    BACKOFF.failed(now)
    failures = st.session_state.get(_FAILURES, 0) + 1
    st.session_state[_FAILURES] = failures
    if failures >= MAX_FAILURES:
        st.session_state[_LOCKED_UNTIL] = now + LOCKOUT_S
        st.session_state[_FAILURES] = 0
        return False, f"Wrong password, {failures} times: this session is locked for {LOCKOUT_S / 60:.0f} minutes."
    return False, f"Wrong password ({MAX_FAILURES - failures} more tries in this session)."


def lock() -> None:
    """Sign this session out of write actions."""
    st.session_state.pop(_UNLOCKED, None)


def shared_note() -> None:
    """The sidebar's line saying this is a shared deployment (nothing without the setting)."""
    if shared_mode():
        st.sidebar.caption("Shared deployment: reading is open to all; training, saving thresholds and writing model "
                           "cards need the admin password (on the page of each).")


def write_gate() -> bool:
    """Whether this session may write, drawing the admin box where a page's write actions are.

    Without the setting: True, and nothing is drawn. In shared mode: the password form (or, once
    unlocked, a button that locks again). Drawn before the page's write buttons, so an unlock
    enables them in the same run."""
    if not shared_mode():
        return True
    box = st.container(border=True)
    if can_write():
        if not box.button("Lock write actions", key="access_lock"):
            box.caption("Shared deployment · write actions unlocked for this session.")
            return True
        lock()
    box.caption("Shared deployment: reading is open to all; the actions below write to the server and need the "
                "admin password.")
    with box.form("access_form", clear_on_submit=True, border=False):
        given = st.text_input("Admin password", type="password", key="access_password")
        pressed = st.form_submit_button("Unlock write actions")
    if pressed:
        unlocked, message = try_unlock(given or "")
        (box.success if unlocked else box.error)(message)
    return can_write()


def allow_write(action: str) -> bool:
    """True when this session may run ``action`` now; otherwise says why on the page, and False."""
    if can_write():
        return True
    st.error(f"{action} needs the admin password (this is a shared deployment): unlock write actions first.")
    return False
