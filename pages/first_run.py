"""First-run page: with no model yet, follow the run that trains one and turn into Predict when it lands."""

import streamlit as st

from emoscope import jobs
from emoscope.app.access import allow_write
from emoscope.app.first_run import QUICK_RECIPE, REFRESH_S, STEPS, Progress
from emoscope.app.sidebar import models_dir
from emoscope.bundle import find_bundles
from emoscope.errors import EmoScopeError
from emoscope.render import escape_markdown

st.header("Getting EmoScope ready")
folder = models_dir()
run = jobs.current(folder)
if run and run.get("name") not in (None, "quick"):
    training = f"the **{escape_markdown(str(run['name']))}** recipe in the background."
else:
    training = ("a **quick** bilingual model (Arabic + English, the 11 emotions of SemEval-2018 E-c) in the "
                "background. It reads the training texts once with two frozen encoders (multilingual-e5-small and "
                "MiniLM) and trains only a small Bi-LSTM on top: a few minutes on a 2-core CPU.")
st.info(f"**Welcome to EmoScope.** This is the first run, so there is no trained model yet: EmoScope is training "
        f"{training} **This page turns into Predict by itself when the model is ready**; there is no need to "
        "reload. Later, the Train page trains the full `default` model (about half an hour, better scores) in one "
        "click, and the app switches to it when it lands.")


def start_quick() -> None:
    if not allow_write("Starting a training run"):  # a shared deployment: only the admin starts runs
        return
    try:
        jobs.start_training(QUICK_RECIPE, folder)
    except EmoScopeError as exc:
        st.error(escape_markdown(str(exc)))
    else:
        st.rerun()


def show_run(state: dict) -> None:
    """The run's step, a bar that never goes back, the elapsed time and its log."""
    progress = Progress.of(state)
    key = f"first_run::fraction::{state.get('name')}"
    running = state.get("state") == "running"
    fraction = max(progress.fraction, st.session_state.get(key, 0.0)) if running else progress.fraction
    st.session_state[key] = fraction if running else 0.0
    step = STEPS[progress.step] if progress.step is not None else "Starting (loading the libraries)"
    st.progress(fraction, text=f"**{escape_markdown(str(state.get('name', '?')))}**: {escape_markdown(step)} · {state.get('elapsed_s', 0) / 60:.1f} min so far")
    if state.get("stage"):
        st.caption(escape_markdown(str(state["stage"])[:300]))
    with st.expander("Training log"):
        st.code(state.get("log_tail") or "(starting…)", language=None)


@st.fragment(run_every=REFRESH_S)
def follow() -> None:
    if find_bundles(folder):  # the model landed: Predict takes over, with no reload by the user
        st.switch_page("pages/predict.py")
    state = jobs.status(folder)
    if state is None:
        st.warning("No training run is going. Start the quick model here (a few minutes), or pick any recipe on the "
                   "Train page.")
        if st.button("Train the quick model", type="primary"):
            start_quick()
        return
    show_run(state)
    if state.get("state") in ("failed", "cancelled"):
        st.error(f"The run {state.get('state')}; its log above says why. Start it again, or pick a recipe on the "
                 "Train page.")
        if st.button("Train the quick model again", type="primary"):
            start_quick()


follow()
st.page_link("pages/train.py", label="Train page: other recipes, other data", icon="🏋️")
