"""One temporary work folder per session (the Batch page's upload and its predictions), bounded and cleaned.

The folder is a ``tempfile.TemporaryDirectory`` held in ``st.session_state``: every rerun of
the session reuses it, and its own ``weakref`` finalizer removes it when the session's state
is dropped (the session ended and Streamlit let it go) or, at the latest, when the server
process exits. ``fresh_workdir`` empties it before a new upload is written, so it holds at
most one upload and its predictions at any time (and an upload is at most
``server.maxUploadSize`` in ``.streamlit/config.toml``).

A closed session's state is not dropped promptly (Streamlit keeps it for reconnection, and the
garbage collector decides when it goes), so the folder's name carries the server's pid and the
session id, and :func:`sweep_closed_sessions` — every ``SWEEP_INTERVAL_S`` in a background thread
of the server (``emoscope.app.startup``) — removes this process's folders whose session has been
inactive (its websocket gone) at two sweeps in a row. A server that was killed leaves its folders
behind: :func:`sweep`, run once at start-up, removes work folders nobody has touched for
``EMOSCOPE_UPLOAD_MAX_AGE_H`` hours (default 6); a live session touches its folder on every rerun,
so another server's live sessions keep theirs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

PREFIX = "emoscope-"
NAMES = ("batch",)
SWEEP_INTERVAL_S = 10.0
_OWNED = re.compile(rf"^{PREFIX}(?:{'|'.join(NAMES)})-(\d+)-([0-9a-f]{{8}}-[0-9a-f-]{{27}})-")
_inactive_once: set[str] = set()  # sessions found inactive at the last sweep


def session_workdir(name: str) -> Path:
    """This session's work folder ``name`` (made on first use, the same one on every rerun)."""
    key = f"workdir::{name}"
    held = st.session_state.get(key)
    if held is None or not Path(held.name).is_dir():
        ctx = get_script_run_ctx()
        owner = f"{os.getpid()}-{ctx.session_id}-" if ctx is not None else ""
        held = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{name}-{owner}")
        st.session_state[key] = held
    else:
        os.utime(held.name)  # in use: a sweep at another server's start-up leaves it alone
    return Path(held.name)


def fresh_workdir(name: str) -> Path:
    """This session's work folder ``name``, emptied of what an earlier upload left there."""
    folder = session_workdir(name)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return folder


def max_age_s() -> float:
    """How old an untouched work folder is before :func:`sweep` removes it (``EMOSCOPE_UPLOAD_MAX_AGE_H``)."""
    return float(os.environ.get("EMOSCOPE_UPLOAD_MAX_AGE_H", 6)) * 3600


def work_folders(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every session work folder in ``root`` (the temporary directory by default)."""
    root = Path(root or tempfile.gettempdir())
    prefixes = tuple(f"{PREFIX}{name}-" for name in NAMES)
    try:
        return sorted(p for p in root.iterdir() if p.name.startswith(prefixes) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def sweep(root: str | os.PathLike[str] | None = None, older_than_s: float | None = None) -> list[Path]:
    """Remove the work folders in ``root`` untouched for ``older_than_s`` (leftovers of dead sessions)."""
    limit = time.time() - (max_age_s() if older_than_s is None else older_than_s)
    removed = []
    for folder in work_folders(root):
        try:
            if folder.stat().st_mtime < limit:
                shutil.rmtree(folder)
                removed.append(folder)
        except OSError:
            continue  # another process removed it first, or it is not ours to remove
    return removed


def sweep_closed_sessions(is_active: Callable[[str], bool], root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove this process's work folders whose session was inactive at this sweep and the last
    (a tab closed, a session expired; two sweeps, so a brief reconnect keeps its folder)."""
    removed, inactive = [], set()
    for folder in work_folders(root):
        owned = _OWNED.match(folder.name)
        if owned is None or int(owned[1]) != os.getpid() or is_active(owned[2]):
            continue
        inactive.add(owned[2])
        if owned[2] in _inactive_once:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    _inactive_once.clear()
    _inactive_once.update(inactive - {f.name for f in removed})
    return removed
