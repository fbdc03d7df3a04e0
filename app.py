"""EmoScope app entry point: ``streamlit run app.py``.

Holds what every page shares: the model picker in the sidebar and the loaded bundle,
cached once per process (``st.cache_resource``) and never mutated.
"""

import os
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
    preselect = os.environ.get("EMOSCOPE_MODEL")
    wanted = Path(preselect).expanduser() if preselect else None
    if wanted is not None and (wanted / "manifest.json").exists() and \
            not any(p.resolve() == wanted.resolve() for p in bundles):
        bundles.insert(0, wanted)  # a bundle outside the models folder, named explicitly
    if not bundles:
        return None
    labels = {}
    for path in bundles:
        try:
            labels[path] = bundle_label(read_manifest(path, verify=False))
        except EmoScopeError as exc:
            labels[path] = f"{path.name} (unreadable: {exc})"
    index = 0
    if wanted is not None:
        match = [i for i, p in enumerate(bundles) if p.resolve() == wanted.resolve() or p.name == preselect]
        if match:
            index = match[0]
        else:
            st.sidebar.warning(f"EMOSCOPE_MODEL={preselect} is not a bundle (no manifest.json there or in {folder})")
    choice = st.sidebar.selectbox("Model", bundles, index=index, format_func=lambda p: labels[p], key="model_picker")
    try:
        manifest = read_manifest(choice, verify=False)
        data = manifest.get("data", {})
        kind = manifest.get("model", {}).get("kind", "?")
        encoders = ", ".join(e.get("name") or e.get("source", "?") for e in manifest.get("model", {}).get("encoders", []))
        st.sidebar.caption(f"{kind}: {encoders}  \nlabels: {', '.join(manifest['labels'])}  \n"
                           f"trained on {data.get('train', '?')} ({data.get('n_train', '?')} texts)")
    except EmoScopeError:
        pass
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
