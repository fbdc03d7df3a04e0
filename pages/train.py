"""Train page: choose a recipe, its data and epochs; start it in a background process; watch it live
(stage, stage-1 model, texts embedded, meta-learner epochs, loss and validation F1 charts, ETA,
log); cancel it safely. A failed run says why in one line at the top.

Starting and cancelling a run (and keeping an uploaded training file) write to the server: in a
shared deployment they need the admin password (``emoscope.app.access``); ``jobs.start_training``
starts one run at a time per models folder, under a unique run id, however many press Start at
once. Text from recipes, their data and run logs is escaped (``render.escape_markdown``)."""

import os
from pathlib import Path

import streamlit as st

from emoscope import jobs
from emoscope.app.access import WRITE_HELP, allow_write, write_gate
from emoscope.app.sidebar import REPO_ROOT, models_dir
from emoscope.app.train_charts import (
    f1_figure,
    loss_figure,
    per_class_figure,
    series_names,
)
from emoscope.config import load_config
from emoscope.errors import EmoScopeError
from emoscope.progress import format_eta, model_title
from emoscope.render import escape_markdown


def recipes_dir() -> Path:
    """Where the recipes offered here live: ``EMOSCOPE_RECIPES_DIR`` or ``training/configs``."""
    return Path(os.environ.get("EMOSCOPE_RECIPES_DIR", REPO_ROOT / "training" / "configs")).expanduser()


def specs_text(specs) -> str:
    """A recipe's spec or list of specs as the comma-separated text the inputs hold."""
    return ", ".join([specs] if isinstance(specs, str) else specs) if specs else ""


@st.cache_data(show_spinner=False)
def recipe_summary(path: str, mtime: float) -> dict:
    """A recipe's description, data and epochs (or why it is invalid), cached by file and mtime."""
    try:
        config = load_config(path)
    except EmoScopeError as exc:
        return {"error": str(exc)}
    return {"description": config.description, "kind": config.kind, "epochs": config.training.epochs,
            "train": specs_text(config.data.train), "validation": specs_text(config.data.validation),
            "eval": specs_text(config.data.eval)}


def specs_of(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def data_choice(recipe: Path, summary: dict, writable: bool) -> tuple[dict, object]:
    """The data widgets, prefilled from the recipe; returns the specs that differ from the
    recipe's (for ``jobs.start_training``) and the uploaded file, if any (none without ``writable``)."""
    key = recipe.stem
    st.markdown("**Data** — dataset specs (`semeval2018:ar:train`, `brighter:eng:dev`, …) or files, comma-separated; "
                "validation may be `holdout:F`. Prefilled from the recipe.")
    c1, c2, c3 = st.columns(3)
    train = c1.text_input("Train", summary["train"], key=f"train_specs_{key}")
    validation = c2.text_input("Validation", summary["validation"], key=f"train_validation_{key}")
    evaluation = c3.text_input("Eval (optional)", summary["eval"], key=f"train_eval_{key}")
    upload = st.file_uploader("…or train on your own labelled file (CSV/TSV: a `text` column and 0/1 label columns)",
                              type=["csv", "tsv"], key=f"train_upload_{key}", disabled=not writable,
                              help=None if writable else WRITE_HELP)
    chosen = {}
    if specs_of(train) != specs_of(summary["train"]):
        chosen["train"] = specs_of(train)
    if specs_of(validation) != specs_of(summary["validation"]):
        chosen["validation"] = specs_of(validation)
    if specs_of(evaluation) != specs_of(summary["eval"]):
        chosen["eval"] = specs_of(evaluation) or None
    return chosen, upload


def start(recipe: Path, folder: Path, chosen: dict, upload, epochs: int, summary: dict) -> None:
    """Start the run with the chosen data (an upload is kept in the runs folder and trained on)."""
    if not allow_write("Starting a training run"):
        return
    try:
        if upload is not None:
            chosen = {**chosen, "train": [str(jobs.save_upload(folder, upload.name, upload.getvalue()))]}
        no_eval = "eval" in chosen and chosen["eval"] is None
        jobs.start_training(recipe, folder, epochs=epochs if epochs != summary["epochs"] else None,
                            train=chosen.get("train"), validation=chosen.get("validation"),
                            eval=None if no_eval else chosen.get("eval"), no_eval=no_eval)
    except EmoScopeError as exc:
        st.error(escape_markdown(exc))
    else:
        st.rerun()


def stack_stages(state) -> None:
    """A stacked run's three stages: the stage-1 model being fine-tuned (fold i of k), the texts
    each encoder has embedded, the meta-learner's epochs."""
    plan = state.plan
    models, folds = plan.get("models") or [], plan.get("folds")
    finished = len([m for m in models if (m["encoder"], m["role"]) in state.finished])
    line = f"**Stage 1 of 3 · fine-tuning**: {finished} of {len(models)} models finished"
    if state.stage == "fine-tune" and state.model is not None:
        m = state.model
        line += f"; now **{escape_markdown(model_title(m['encoder'], m['role'], folds))}** (model {m.get('index')} of {m.get('of')})"
        run = [e for e in state.epochs if (e.get("encoder"), e.get("role")) == (m["encoder"], m["role"])]
        line += f", epoch {len(run) + (state.batch is not None)}/{plan.get('epochs')}"
    st.markdown(line)
    if models:
        st.progress(finished / len(models))
    embedded = [f"{escape_markdown(name)} {state.texts_read(name)} of {reads.planned} texts ({reads.cached} from the cache)"
                for name, reads in state.reads.items()]
    st.markdown("**Stage 2 of 3 · embedding**: " + " · ".join(embedded))
    total = sum(r.planned for r in state.reads.values())
    st.progress(min(1.0, sum(state.texts_read(n) for n in state.reads) / total) if total else 0.0)
    meta = state.stage_epochs("meta")
    best = max((e["val_macro_f1"] for e in meta), default=None)
    st.markdown(f"**Stage 3 of 3 · meta-learner**: epoch {len(meta)} of {plan.get('meta_epochs')}"
                + (f" (best validation macro-F1 so far {best:.3f})" if best is not None else ""))


def charts(state) -> None:
    """Loss and validation macro-F1 per epoch (a stack: stage 1's models, then the meta-learner);
    each label's F1 on demand."""
    if not state.epochs:
        return
    groups = [("fine-tune", "Stage 1"), ("meta", "Meta-learner")] if state.stacked else [("fine-tune", "")]
    for stage, prefix in groups:
        epochs = state.stage_epochs(stage)
        if epochs:
            loss, f1 = (f"{prefix} · training loss", f"{prefix} · validation macro-F1") if prefix else \
                ("Training loss", "Validation macro-F1")
            c1, c2 = st.columns(2)
            c1.plotly_chart(loss_figure(epochs, loss), width="stretch", key=f"train_loss_{stage}")
            c2.plotly_chart(f1_figure(epochs, f1), width="stretch", key=f"train_f1_{stage}")
    if st.checkbox("Validation F1 per label", key="train_per_class"):
        names = series_names(state.epochs)
        series = st.selectbox("Model", names, index=len(names) - 1, key="train_series") if len(names) > 1 else names[0]
        st.plotly_chart(per_class_figure(state.epochs, series), width="stretch", key="train_class_chart")


def show_run(live: dict) -> None:
    state = live["progress"]
    if live["state"] == "failed":
        st.error(f"**The run failed:** {escape_markdown(live['reason'])}")
    line = (f"**{escape_markdown(live['name'])}** ({escape_markdown(Path(live['recipe']).stem)}): {live['state']}, "
            f"{live['elapsed_s'] / 60:.1f} min")
    eta = format_eta(live["eta_s"])
    if eta:
        line += f" · {eta}"
    elif live["state"] == "running":
        line += " · time left: measured from the first batches"
    st.markdown(line)
    if state.stacked:
        stack_stages(state)
    elif live["stage"]:
        st.caption(escape_markdown(live["stage"][:300]))
    charts(state)
    with st.expander("Log", expanded=live["state"] == "failed"):
        st.code(live["log_tail"] or "(starting…)", language=None)
    if live["state"] == "finished":
        st.success("Done: the new model is in the sidebar picker (reload the page if it is not).")
    elif live["state"] == "cancelled":
        st.warning("Cancelled. No half-written model was left behind; a stacked recipe resumes its finished "
                   "stage-1 models next time.")


st.header("Train a model")
folder = models_dir()
if st.session_state.get("bundle_path") is None:
    st.info("**Welcome to EmoScope.** There is no trained model yet. Train the `default` recipe here: a bilingual "
            "Arabic + English model (SemEval-2018 E-c, 11 emotions) that takes about half an hour on a 2-core CPU. "
            "The page follows its progress; the model appears in the sidebar picker when it is done.")

recipes = sorted(recipes_dir().glob("*.toml"))
names = [p.stem for p in recipes]
recipe = st.selectbox("Recipe", recipes, index=names.index("default") if "default" in names else 0,
                      format_func=lambda p: p.stem, key="train_recipe")
run = jobs.current(folder)
live = jobs.status(folder, run) if run else None
running = live is not None and live["state"] == "running"
if recipe is not None:
    summary = recipe_summary(str(recipe), recipe.stat().st_mtime)
    if "error" in summary:
        st.error(f"This recipe is invalid: {escape_markdown(summary['error'])}")
    else:
        st.caption(escape_markdown(summary["description"]))
        writable = write_gate()  # shared deployment: the admin box, before the widgets it unlocks
        chosen, upload = data_choice(recipe, summary, writable)
        label = "Epochs (stage 1: the base encoders' fine-tuning)" if summary["kind"] == "stacked" else "Epochs"
        epochs = int(st.number_input(label, min_value=1, max_value=1000, value=summary["epochs"],
                                     key=f"train_epochs_{recipe.stem}"))
        c1, c2 = st.columns(2)
        if c1.button("Start training", type="primary", disabled=running or not writable,
                     help=None if writable else WRITE_HELP):
            start(recipe, folder, chosen, upload, epochs, summary)
        if c2.button("Cancel the run", disabled=not running or not writable, help=None if writable else WRITE_HELP) \
                and allow_write("Cancelling a training run"):
            jobs.cancel(folder)
            st.rerun()
        if not writable:
            st.caption("Starting or cancelling a run needs the admin password; the progress below is open to all.")


@st.fragment(run_every=2.0)
def progress() -> None:
    live = jobs.status(folder)
    if live is None:
        st.caption(f"No training run yet. Bundles go to `{folder}`.")
        return
    if running and live["state"] != "running":
        st.rerun(scope="app")  # the run ended: redraw the buttons, and the picker with the new model
    show_run(live)


progress()
