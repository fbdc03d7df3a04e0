"""Process-wide resources for the Streamlit app (needs Streamlit; the rest of emoscope does not).

One ``Predictor`` per bundle per process, shared by every session and never mutated:
per-user state (text, thresholds being tuned) lives in ``st.session_state``.
"""

from __future__ import annotations

import streamlit as st

from emoscope.predict import Predictor


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_predictor(path: str, mtime: float) -> Predictor:
    """The bundle at ``path``; ``mtime`` (of its manifest) makes a retrained bundle reload."""
    return Predictor(path)
