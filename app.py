"""EmoScope app entry point: ``streamlit run app.py``.

Draws the sidebar model picker (``emoscope.app.sidebar``) and runs the pages through
``st.navigation``. With no bundle yet it opens on the first-run page while a run trains one
(``emoscope.app.first_run``: ``scripts/app.sh`` starts the quick recipe), else on Train; when a
run's bundle lands, the picker moves to it. What the pages share (the loaded bundle, cached
once per process and never mutated; this user's thresholds) is in ``emoscope.app.state``.
"""

import streamlit as st

from emoscope.app.startup import warm_up

warm_up()  # the pages' libraries, imported once under a lock before anything else: lazy imports raced across sessions
from emoscope.app.first_run import landing, switch_to_new_bundle, watch_new_bundles
from emoscope.app.markup import show_html
from emoscope.app.sidebar import models_dir, pick_bundle
from emoscope.render import INPUT_BIDI_CSS

st.set_page_config(page_title="EmoScope", page_icon="🎭", layout="wide")
show_html(INPUT_BIDI_CSS)

switch_to_new_bundle(models_dir())  # a bundle that landed since this session last looked: the picker moves to it
st.session_state["bundle_path"] = pick_bundle()
first_run = st.session_state["bundle_path"] is None  # no bundle yet: the first-run screen while one trains, else Train
opens_on = landing(st.session_state["bundle_path"], models_dir())
getting_ready = [st.Page("pages/first_run.py", title="Getting ready", icon="⏳", default=opens_on == "first_run")]
page = st.navigation([
    *(getting_ready if first_run else []),
    st.Page("pages/predict.py", title="Predict", icon="🔮", default=opens_on == "predict"),
    st.Page("pages/train.py", title="Train", icon="🏋️", default=opens_on == "train"),
    st.Page("pages/explain.py", title="Explain", icon="🔍"),
    st.Page("pages/words.py", title="Words across a dataset", icon="🗂️"),
    st.Page("pages/thresholds.py", title="Thresholds", icon="🎚️"),
    st.Page("pages/evaluate.py", title="Evaluate", icon="📊"),
    st.Page("pages/errors.py", title="Errors", icon="🧐"),
    st.Page("pages/batch.py", title="Batch", icon="📄"),
    st.Page("pages/model.py", title="Model", icon="🪪"),
])
if not first_run:
    watch_new_bundles(models_dir())  # a run going (default from Train, say): switch to its bundle when it lands
page.run()
