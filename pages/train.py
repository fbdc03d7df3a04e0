"""Train page: start a recipe in a background process, follow it live, cancel it safely."""

from pathlib import Path

import streamlit as st

from emoscope import jobs
from emoscope.config import load_config
from emoscope.errors import EmoScopeError
from emoscope.app.sidebar import REPO_ROOT, models_dir

st.header("Train a model")
folder = models_dir()
if st.session_state.get("bundle_path") is None:
    st.info("**Welcome to EmoScope.** There is no trained model yet. Train the `default` recipe here: a bilingual "
            "Arabic + English model (SemEval-2018 E-c, 11 emotions) that takes about half an hour on a 2-core CPU. "
            "The page follows its progress; the model appears in the sidebar picker when it is done.")

recipes = sorted((REPO_ROOT / "training" / "configs").glob("*.toml"))
descriptions = {}
for path in recipes:
    try:
        descriptions[path] = load_config(path).description
    except EmoScopeError as exc:
        descriptions[path] = f"(invalid: {exc})"
names = [p.stem for p in recipes]
default_index = names.index("default") if "default" in names else 0
recipe = st.selectbox("Recipe", recipes, index=default_index, format_func=lambda p: p.stem, key="train_recipe")
st.caption(descriptions.get(recipe, ""))
run = jobs.current(folder)
live = jobs.status(folder, run) if run else None
running = live is not None and live["state"] == "running"
c1, c2 = st.columns(2)
if c1.button("Start training", type="primary", disabled=running):
    try:
        jobs.start_training(recipe, folder)
    except EmoScopeError as exc:
        st.error(str(exc))
    else:
        st.rerun()
if c2.button("Cancel the run", disabled=not running):
    jobs.cancel(folder)
    st.rerun()


@st.fragment(run_every=2.0)
def progress() -> None:
    state = jobs.status(folder)
    if state is None:
        st.caption(f"No training run yet. Bundles go to `{folder}`.")
        return
    minutes = state["elapsed_s"] / 60
    line = f"**{state['name']}** ({Path(state['recipe']).stem}): {state['state']}, {minutes:.1f} min"
    if state["epoch"] is not None:
        line += f" · epoch {state['epoch']}/{state['epochs']} · loss {state['loss']:.4f}"
    if state["eta_s"] is not None:
        line += f" · about {state['eta_s'] / 60:.0f} min left"
    st.markdown(line)
    if state["stage"]:
        st.caption(f"stage: {state['stage'][:200]}")
    st.code(state["log_tail"] or "(starting…)", language=None)
    if state["state"] == "finished":
        st.success("Done: the new model is in the sidebar picker (reload the page if it is not).")
    elif state["state"] == "failed":
        st.error("The run stopped with an error; the log above says why. Nothing was written to the picker.")
    elif state["state"] == "cancelled":
        st.warning("Cancelled. No half-written model was left behind; a stacked recipe resumes its finished "
                   "stage-1 models next time.")


progress()
