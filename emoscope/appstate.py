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


@st.cache_resource(show_spinner="Preparing the explainers…", max_entries=4)
def load_explain_model(path: str, mtime: float):
    """The explainer view of the shared Predictor (eager-attention copies load on first use)."""
    from emoscope.explain import ExplainModel

    return ExplainModel(load_predictor(path, mtime))


@st.cache_resource(max_entries=4)
def load_validation(path: str, mtime: float):
    """The bundle's validation texts, gold labels and probabilities (read-only, shared)."""
    from emoscope.bundle import read_manifest, read_validation

    return read_validation(path, read_manifest(path, verify=False))


def bundle_mtime(path) -> float:
    from pathlib import Path

    return (Path(path) / "manifest.json").stat().st_mtime


def require_validation(predictor: Predictor, missing: str):
    """The bundle's validation data; stops the page with ``missing`` as a warning when it has none."""
    validation = load_validation(str(predictor.path), bundle_mtime(predictor.path))
    if validation is None:
        st.warning(missing)
        st.stop()
    return validation


def require_predictor() -> Predictor:
    """The sidebar's bundle, loaded; stops the page with a clear message when there is none."""
    from emoscope.errors import EmoScopeError
    from emoscope.ui import models_dir

    path = st.session_state.get("bundle_path")
    if path is None:
        st.info(f"No trained model found in `{models_dir()}`. Open **Train** to train the default model here, "
                "or run `.venv/bin/emoscope train --config training/configs/default.toml`.")
        st.stop()
    try:
        return load_predictor(str(path), bundle_mtime(path))
    except (EmoScopeError, OSError) as exc:
        st.error(f"This model cannot be loaded: {exc}")
        st.stop()


def thresholds_key(predictor: Predictor) -> str:
    """Session-state key of the thresholds this user is tuning for this bundle."""
    return f"thresholds::{predictor.path}"


def current_thresholds(predictor: Predictor):
    """This user's thresholds for the bundle (the bundle's own until they move a slider)."""
    import numpy as np

    key = thresholds_key(predictor)
    if key not in st.session_state:
        st.session_state[key] = [float(t) for t in predictor.thresholds]
    return np.asarray(st.session_state[key], dtype=float)
