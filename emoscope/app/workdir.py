"""One temporary work folder per session (the Batch page's upload and its predictions), bounded and cleaned.

The folder is a ``tempfile.TemporaryDirectory`` held in ``st.session_state``: every rerun of
the session reuses it, and its own ``weakref`` finalizer removes it when the session's state
is dropped (the session ended and Streamlit let it go) or, at the latest, when the server
process exits. ``fresh_workdir`` empties it before a new upload is written, so it holds at
most one upload and its predictions at any time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import streamlit as st


def session_workdir(name: str) -> Path:
    """This session's work folder ``name`` (made on first use, the same one on every rerun)."""
    key = f"workdir::{name}"
    held = st.session_state.get(key)
    if held is None or not Path(held.name).is_dir():
        held = tempfile.TemporaryDirectory(prefix=f"emoscope-{name}-")
        st.session_state[key] = held
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

