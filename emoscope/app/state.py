"""Process-wide resources and per-user state for the Streamlit pages (needs Streamlit).

One ``Predictor`` (and one ``ExplainModel``, one copy of the validation data) per bundle per
process, shared by every session and never mutated: ``st.cache_resource`` keyed by the
bundle's path and its manifest's mtime, so a bundle whose manifest changes (retrained, new
thresholds saved) loads afresh and ``forget_bundle`` drops only that bundle's old copies.
Probabilities of an uploaded file are cached per process too (keyed by the file's hash, the
bundle and its mtime; computed, on a miss only, through the caller's ``run``: the page's turn in
the work queue). Per-user state (text, thresholds being tuned) lives in
``st.session_state``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import streamlit as st

from emoscope.app.sidebar import models_dir
from emoscope.bundle import ValidationData, manifest_mtime, read_manifest, read_validation
from emoscope.errors import EmoScopeError
from emoscope.explain import ExplainModel
from emoscope.predict import Predictor
from emoscope.render import escape_markdown


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_predictor(path: str, mtime: float) -> Predictor:
    """The bundle at ``path``; ``mtime`` (of its manifest) makes a retrained bundle reload."""
    return Predictor(path)


@st.cache_resource(show_spinner="Preparing the explainers…", max_entries=4)
def load_explain_model(path: str, mtime: float) -> ExplainModel:
    """The explainer view of the shared Predictor (eager-attention copies load on first use)."""
    return ExplainModel(load_predictor(path, mtime))


@st.cache_resource(max_entries=4)
def load_validation(path: str, mtime: float) -> ValidationData | None:
    """The bundle's validation texts, gold labels and probabilities (read-only, shared)."""
    return read_validation(path, read_manifest(path, verify=False))


def forget_bundle(path, mtime: float) -> None:
    """Drop the cached copies of one bundle loaded at ``mtime``; every other bundle stays loaded."""
    for loader in (load_explain_model, load_predictor, load_validation):
        loader.clear(str(path), mtime)


def require_validation(predictor: Predictor, missing: str) -> ValidationData:
    """The bundle's validation data; stops the page with ``missing`` as a warning when it has none."""
    validation = load_validation(str(predictor.path), manifest_mtime(predictor.path))
    if validation is None:
        st.warning(missing)
        st.stop()
    return validation


def require_predictor() -> Predictor:
    """The sidebar's bundle, loaded; stops the page with a clear message when there is none."""
    path = st.session_state.get("bundle_path")
    if path is None:
        st.info(f"No trained model found in `{models_dir()}`. Open **Train** to train the default model here, "
                "or run `.venv/bin/emoscope train --config training/configs/default.toml`.")
        st.stop()
    try:
        return load_predictor(str(path), manifest_mtime(path))
    except (EmoScopeError, OSError) as exc:
        st.error(f"This model cannot be loaded: {escape_markdown(exc)}")  # the message can quote a bundle's labels
        st.stop()


UPLOAD_CACHE_SIZE = 8
_UPLOADS: OrderedDict[tuple[str, str, float], np.ndarray] = OrderedDict()
_UPLOADS_LOCK = threading.Lock()


def upload_probabilities(digest: str, path: str, mtime: float, texts: Sequence[str],
                         run: Callable[[Callable[[], np.ndarray]], np.ndarray] | None = None) -> np.ndarray:
    """Probabilities of an uploaded file's texts, computed once per (file hash, bundle, mtime).

    The texts are not part of the key: they follow from the file's name and bytes, hashed into
    ``digest`` (``file_digest``), and the bundle. On a miss the prediction runs through ``run``
    (the Evaluate page passes its turn in the work queue), so a cached rerun never queues. The
    array is shared by every session: read-only. At most ``UPLOAD_CACHE_SIZE`` files are kept.
    """
    key = (digest, path, mtime)
    with _UPLOADS_LOCK:
        if key in _UPLOADS:
            _UPLOADS.move_to_end(key)
            return _UPLOADS[key]

    def compute() -> np.ndarray:
        return load_predictor(path, mtime).predict_proba(texts)

    probs = np.asarray(run(compute) if run is not None else compute())
    probs.setflags(write=False)
    with _UPLOADS_LOCK:
        _UPLOADS[key] = probs
        while len(_UPLOADS) > UPLOAD_CACHE_SIZE:
            _UPLOADS.popitem(last=False)
    return probs


def file_digest(name: str, data: bytes) -> str:
    """The sha256 of an uploaded file's name and bytes (the name picks its reader), the key of its predictions."""
    return hashlib.sha256(name.encode("utf-8") + b"\0" + data).hexdigest()


def thresholds_key(predictor: Predictor) -> str:
    """Session-state key of the thresholds this user is tuning for this bundle."""
    return f"thresholds::{predictor.path}"


def current_thresholds(predictor: Predictor) -> np.ndarray:
    """This user's thresholds for the bundle (the bundle's own until they move a slider)."""
    key = thresholds_key(predictor)
    if key not in st.session_state:
        st.session_state[key] = [float(t) for t in predictor.thresholds]
    return np.asarray(st.session_state[key], dtype=float)


def forget_thresholds(predictor: Predictor) -> None:
    """Drop this user's thresholds for the bundle: the next run reads the bundle's own again."""
    st.session_state.pop(thresholds_key(predictor), None)
