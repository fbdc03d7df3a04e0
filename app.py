"""EmoScope app entry point: ``streamlit run app.py``.

Holds what every page shares: the model picker in the sidebar and the loaded bundle,
cached once per process (``st.cache_resource``) and never mutated.
"""

from pathlib import Path

import streamlit as st

from emoscope.bundle import find_bundles, read_manifest
from emoscope.errors import EmoScopeError
from emoscope.ui import INPUT_BIDI_CSS, bundle_label, models_dir

st.set_page_config(page_title="EmoScope", page_icon="🎭", layout="wide")
st.html(INPUT_BIDI_CSS)


def pick_bundle() -> Path | None:
    """Sidebar picker over the bundles in the models folder; None when there are none."""
    folder = models_dir()
    bundles = find_bundles(folder)
    st.sidebar.title("EmoScope")
    if not bundles:
        return None
    labels = {}
    for path in bundles:
        try:
            labels[path] = bundle_label(read_manifest(path, verify=False))
        except EmoScopeError as exc:
            labels[path] = f"{path.name} (unreadable: {exc})"
    choice = st.sidebar.selectbox("Model", bundles, format_func=lambda p: labels[p])
    st.sidebar.caption(f"Bundles in `{folder}`")
    return choice


st.session_state["bundle_path"] = pick_bundle()
first_run = st.session_state["bundle_path"] is None  # no bundle yet: land on Train
page = st.navigation([
    st.Page("pages/predict.py", title="Predict", icon="🔮", default=not first_run),
    st.Page("pages/train.py", title="Train", icon="🏋️", default=first_run),
    st.Page("pages/explain.py", title="Explain", icon="🔍"),
    st.Page("pages/thresholds.py", title="Thresholds", icon="🎚️"),
    st.Page("pages/evaluate.py", title="Evaluate", icon="📊"),
    st.Page("pages/errors.py", title="Errors", icon="🧐"),
    st.Page("pages/batch.py", title="Batch", icon="📄"),
])
page.run()
