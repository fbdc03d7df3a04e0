"""One temporary work folder per session (the Batch page's upload and its predictions), bounded and cleaned.

The folder is a ``tempfile.TemporaryDirectory`` held in ``st.session_state``: every rerun of
the session reuses it, and its own ``weakref`` finalizer removes it when the session's state
is dropped (the session ended and Streamlit let it go) or, at the latest, when the server
process exits. ``fresh_workdir`` empties it before a new upload is written, so it holds at
most one upload and its predictions at any time (and an upload is at most
``server.maxUploadSize`` in ``.streamlit/config.toml``). A server that was killed leaves its
folders behind: :func:`sweep`, run once at start-up (``emoscope.app.startup``), removes work
folders nobody has touched for ``EMOSCOPE_UPLOAD_MAX_AGE_H`` hours (default 6); a live session
touches its folder on every rerun, so another server's live sessions keep theirs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import streamlit as st

PREFIX = "emoscope-"
NAMES = ("batch",)


def session_workdir(name: str) -> Path:
    """This session's work folder ``name`` (made on first use, the same one on every rerun)."""
    key = f"workdir::{name}"
    held = st.session_state.get(key)
    if held is None or not Path(held.name).is_dir():
        held = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{name}-")
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
