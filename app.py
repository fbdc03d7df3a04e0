"""EmoScope app entry point: ``streamlit run app.py``.

Draws the sidebar model picker (``emoscope.app.sidebar``) and runs the pages through
``st.navigation``; what the pages share (the loaded bundle, cached once per process and never
mutated; this user's thresholds) is in ``emoscope.app.state``.
"""

import streamlit as st

from emoscope.app.markup import show_html
from emoscope.app.sidebar import pick_bundle
from emoscope.render import INPUT_BIDI_CSS

st.set_page_config(page_title="EmoScope", page_icon="🎭", layout="wide")
show_html(INPUT_BIDI_CSS)

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
    st.Page("pages/model.py", title="Model", icon="🪪"),
])
page.run()
