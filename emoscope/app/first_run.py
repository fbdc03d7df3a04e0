"""The first run: a quick model trained in the background, and the app following it.

``scripts/app.sh`` runs ``python -m emoscope.app.first_run`` after set-up. With no bundle in the
models folder and no training run going, it starts the ``quick`` recipe (two frozen encoders,
only the Bi-LSTM meta-learner trains: minutes on two cores) through ``emoscope.jobs`` and returns
at once, so the app is up while the model trains. The app then lands on the first-run page
(``pages/first_run.py``), which follows the run and turns into Predict when the bundle lands.
With a bundle already there it does nothing, so a second start costs nothing.

Later runs (``default`` from the Train page, say) are followed the same way: while a run is going,
``watch_new_bundles`` polls the models folder, and when a new bundle lands the sidebar picker
moves to it (``switch_to_new_bundle``); the older bundles stay selectable.

The launcher and the progress reading are plain functions (no Streamlit); the two functions that
draw import Streamlit when they run, so ``python -m emoscope.app.first_run`` stays light.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoscope import jobs
from emoscope.app.sidebar import REPO_ROOT, listed_bundles, models_dir
from emoscope.bundle import find_bundles
from emoscope.errors import EmoScopeError

QUICK_RECIPE = REPO_ROOT / "training" / "configs" / "quick.toml"
REFRESH_S = 2.0
PICKER_KEY = "model_picker"  # the sidebar picker's widget key (emoscope.app.sidebar.pick_bundle)
SEEN_KEY = "first_run::bundles_seen"
# What a run is doing, read from its one-line ``stage`` (``jobs.status``): the first step whose
# words the line holds. Both the log's "[stage 2] …" lines and the event summaries ("stage 2 of 3 ·
# embedding with …", "… meta-learner · epoch 4/10", "done") are read.
STEPS = ("Reading the data", "Fine-tuning the encoders", "Embedding the texts with the encoders",
         "Training the meta-learner", "Scoring and saving the model")
STEP_WORDS = ((4, ("[done", "[eval", "scoring", "saving", "finish")), (3, ("meta-learner", "[stage 3", "stage 3 of")),
              (2, ("embedding", "[stage 2", "stage 2 of")), (1, ("fine-tun", "[stage 1", "stage 1 of", "[epoch")),
              (0, ("loading the data", "[data")))
WITHIN = {1: re.compile(r"epoch (\d+)\s*/\s*(\d+)"), 2: re.compile(r"(\d+) of (\d+) texts"),
          3: re.compile(r"epoch (\d+)\s*/\s*(\d+)")}
# The share of the bar each step spans, from where the quick recipe's time goes (stage 2 about
# 70 %, the meta-learner about 20 %); a fine-tuning recipe's stage 1 fills up to half of it.
# Within a step the bar moves with the step's own count (epoch 4/10) or, where the line has none,
# with the time so far against the quick recipe's usual few minutes, never past the step's end.
SPAN = {0: (0.0, 0.05), 1: (0.05, 0.5), 2: (0.05, 0.75), 3: (0.75, 0.95), 4: (0.95, 0.99)}
USUAL_S = 300.0


def active_run(folder: Path) -> dict[str, Any] | None:
    """The status of the run training into ``folder`` now, or None when none is running."""
    state = jobs.status(folder)
    return state if state is not None and state.get("state") == "running" else None


def has_bundle(folder: Path) -> bool:
    """Whether the app has a bundle to open: one in ``folder``, or the one ``EMOSCOPE_MODEL`` names."""
    return bool(listed_bundles(folder, os.environ.get("EMOSCOPE_MODEL")))


def start_if_needed(folder: Path, recipe: str | Path = QUICK_RECIPE) -> dict[str, Any] | None:
    """Start ``recipe`` in the background when the app has no bundle and nothing is training;
    the run's info, or None when nothing was started."""
    if has_bundle(folder) or active_run(folder) is not None:
        return None
    return jobs.start_training(recipe, folder)


def landing(bundle: Path | None, folder: Path) -> str:
    """The page a new visit opens on: Predict with a bundle; with none, the first-run screen
    while a run trains one, else Train."""
    if bundle is not None:
        return "predict"
    return "first_run" if active_run(folder) is not None else "train"


@dataclass(frozen=True)
class Progress:
    """Where a run stands, for the first-run screen: the step it is on and a 0–1 fraction."""

    step: int | None
    fraction: float

    @classmethod
    def of(cls, state: dict[str, Any]) -> Progress:
        """Read from the run's ``stage`` line; a line it does not know gives no step and no fraction."""
        line = (state.get("stage") or "").strip().lower()
        if state.get("state") == "finished" or line == "done":
            return cls(len(STEPS) - 1, 1.0)
        if line.startswith("failed"):
            return cls(None, 0.0)
        step = next((s for s, words in STEP_WORDS if any(w in line for w in words)), None)
        if step is None:
            return cls(None, 0.0)
        start, end = SPAN[step]
        count = WITHIN[step].search(line) if step in WITHIN else None
        if count and int(count.group(2)) > 0:
            return cls(step, start + min(1.0, int(count.group(1)) / int(count.group(2))) * (end - start))
        by_time = float(state.get("elapsed_s") or 0.0) / USUAL_S
        return cls(step, min(end, max(start, by_time)))


def bundle_stamps(folder: Path) -> dict[str, int]:
    """Each bundle in ``folder`` by path, with its folder's inode: a bundle written again (even
    under the same name) is a new folder renamed into place, while saving thresholds is not."""
    stamps = {}
    for path in find_bundles(folder):
        try:
            stamps[str(path)] = path.stat().st_ino
        except OSError:  # removed between the listing and the stat
            continue
    return stamps


def new_bundle(folder: Path, seen: dict[str, int]) -> Path | None:
    """The newest bundle in ``folder`` that ``seen`` does not hold (new, or written again), or None."""
    stamps = bundle_stamps(folder)
    fresh = [path for path, inode in stamps.items() if seen.get(path) != inode]
    return Path(fresh[0]) if fresh else None  # find_bundles lists newest first


def switch_to_new_bundle(folder: Path) -> None:
    """Before the picker is drawn: move it to a bundle that landed since this session last looked."""
    import streamlit as st  # here, not at the top: the launcher (python -m emoscope.app.first_run) stays Streamlit-free

    if SEEN_KEY not in st.session_state:  # a new session: the picker opens on the newest bundle anyway
        st.session_state[SEEN_KEY] = bundle_stamps(folder)
        return
    fresh = new_bundle(folder, st.session_state[SEEN_KEY])
    st.session_state[SEEN_KEY] = bundle_stamps(folder)
    if fresh is not None:
        st.session_state[PICKER_KEY] = fresh
        others = "; the others stay in the picker" if len(st.session_state[SEEN_KEY]) > 1 else ""
        st.toast(f"The model **{fresh.name}** is ready and selected{others}.", icon="✅")


def watch_new_bundles(folder: Path) -> None:
    """While a run trains into ``folder`` (and a bundle is open), note it in the sidebar and rerun
    the app when its bundle lands, so the picker moves to it."""
    import streamlit as st  # here, not at the top: the launcher (python -m emoscope.app.first_run) stays Streamlit-free

    run = jobs.current(folder)
    if not run or run.get("state") != "running":
        return

    @st.fragment(run_every=REFRESH_S * 2)
    def watch() -> None:
        state = jobs.status(folder) or {}
        if new_bundle(folder, st.session_state.get(SEEN_KEY, {})) is not None:
            st.rerun(scope="app")
        if state.get("state") == "running":
            st.caption(f"Training **{state.get('name', '?')}** ({state.get('elapsed_s', 0) / 60:.0f} min so far); "
                       "the picker switches to it when it lands.")

    with st.sidebar:
        watch()


def main(argv: list[str] | None = None) -> int:
    """``python -m emoscope.app.first_run [RECIPE]``: start the quick model when there is none."""
    recipe = Path(argv[0]) if argv else QUICK_RECIPE
    folder = models_dir()
    try:
        info = start_if_needed(folder, recipe)
    except EmoScopeError as exc:
        print(f"[first run] could not start {recipe.stem}: {exc}; the app's Train page can start a run", flush=True)
        return 0
    if info is not None:
        print(f"[first run] no model in {folder} yet: training the {info['name']} bilingual model in the background "
              f"(a few minutes; log: {info['log']}). The app opens on its progress and turns into Predict "
              "when it lands.", flush=True)
    elif not has_bundle(folder):
        print(f"[first run] a training run is going in {folder}; the app follows it", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
