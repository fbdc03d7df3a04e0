"""The first run: the quick recipe, the launcher ``scripts/app.sh`` calls, and the first-run screen.

Real background runs of a tiny recipe (the tiny encoder and data of conftest), real bundles; the
app through AppTest. The real ``quick`` recipe is only loaded here, never trained (that is
``benchmarks/first_run.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_tiny_recipe
from streamlit.testing.v1 import AppTest

from emoscope import jobs
from emoscope.app import first_run
from emoscope.app.first_run import QUICK_RECIPE, Progress, bundle_stamps, new_bundle, start_if_needed
from emoscope.bundle import find_bundles
from emoscope.config import load_config

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def tiny_recipe(folder: Path, tiny_encoder: Path, tiny_data: dict[str, Path], epochs: int, name: str = "tiny-first") -> Path:
    return write_tiny_recipe(folder, tiny_encoder, tiny_data, epochs, name)


def wait_for(condition, seconds: float = 180.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"not within {seconds:.0f}s")


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(folder))
    monkeypatch.delenv("EMOSCOPE_MODEL", raising=False)
    yield folder
    jobs.cancel(folder)  # never leave a background run behind


def test_quick_recipe_is_bilingual_frozen_and_small():
    config = load_config(QUICK_RECIPE)
    assert config.name == "quick" and config.kind == "stacked"
    assert config.data.train == ("semeval2018:ar:train", "semeval2018:en:train")
    assert config.data.eval == ("semeval2018:ar:dev", "semeval2018:en:dev")
    assert all(not e.fine_tune for e in config.encoders)  # only the meta-learner trains
    assert {e.source for e in config.encoders} == {"me5-small", "minilm-l6"}
    assert config.data.max_train and config.data.max_train <= 3000


def test_launcher_starts_a_run_only_without_a_bundle_or_a_run(models, tmp_path, tiny_encoder, tiny_data, tiny_bundle):
    recipe = tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs=300)
    info = start_if_needed(models, recipe)
    assert info is not None and info["name"] == "tiny-first"
    assert start_if_needed(models, recipe) is None  # a run is going: no second one
    assert first_run.landing(None, models) == "first_run"
    assert jobs.cancel(models)
    assert first_run.landing(None, models) == "train"  # nothing training: the Train page, as before
    shutil.copytree(tiny_bundle, models / "tiny")
    assert start_if_needed(models, recipe) is None  # a bundle is there: nothing is trained
    assert len(list((models / ".runs").glob("*.json"))) == 1
    assert first_run.landing(models / "tiny", models) == "predict"


def test_launcher_command_with_a_bundle_is_quick_and_trains_nothing(models, tiny_bundle):
    shutil.copytree(tiny_bundle, models / "tiny")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "emoscope.app.first_run"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - started < 10  # no torch, no training
    assert out.stdout == "" and not (models / ".runs").exists()


@pytest.mark.parametrize("lines", [
    ("[data] train 2400 (…)", "[stage 2] me5-frozen: 2400 of 4371 texts read", "[stage 3 of 3] meta-learner"),
    ("loading the data and the models", "stage 2 of 3 · embedding with me5-frozen (pretrained) → train: 2400 texts",
     "stage 3 of 3 · meta-learner · epoch 4/10"),
])
def test_progress_reads_the_stage_line_and_never_claims_done_early(lines):
    assert Progress.of({"state": "running", "stage": ""}) == Progress(None, 0.0)
    data, embed, meta = (Progress.of({"state": "running", "stage": line}) for line in lines)
    assert (data.step, embed.step, meta.step) == (0, 2, 3)
    assert data.fraction < embed.fraction < meta.fraction < 1.0
    assert Progress.of({"state": "running", "stage": "stage 3 of 3 · meta-learner · epoch 9/10"}).fraction > meta.fraction
    assert Progress.of({"state": "running", "stage": "scoring and writing the bundle"}).step == 4
    # a step line with no count moves with the time, within the step's share of the bar only
    embedding = "stage 2 of 3 · embedding with me5-frozen (pretrained) → train: 2400 texts"
    early, later, late = (Progress.of({"state": "running", "stage": embedding, "elapsed_s": t}) for t in (5, 100, 900))
    assert early.fraction < later.fraction < late.fraction <= Progress.of({"state": "running", "stage": lines[2]}).fraction
    assert Progress.of({"state": "failed", "stage": "failed: out of memory"}).step is None
    assert Progress.of({"state": "finished", "stage": "done"}).fraction == 1.0


def test_a_bundle_written_again_is_new_but_saved_thresholds_are_not(tmp_path, tiny_bundle):
    shutil.copytree(tiny_bundle, tmp_path / "a")
    seen = bundle_stamps(tmp_path)
    assert new_bundle(tmp_path, seen) is None
    (tmp_path / "a" / "manifest.json").write_bytes((tmp_path / "a" / "manifest.json").read_bytes())
    assert new_bundle(tmp_path, seen) is None  # rewritten in place (thresholds saved): not new
    shutil.copytree(tiny_bundle, tmp_path / ".b-staging")
    shutil.rmtree(tmp_path / "a")
    (tmp_path / ".b-staging").rename(tmp_path / "a")  # trained again under the same name
    assert new_bundle(tmp_path, seen) == tmp_path / "a"


def test_first_run_screen_shows_progress_then_predict_when_the_bundle_lands(models, tmp_path, tiny_encoder, tiny_data):
    start_if_needed(models, tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs=40))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.header[0].value == "Getting EmoScope ready"
    assert "turns into Predict by itself" in at.info[0].value
    bars = at.get("progress")
    assert bars and "tiny-first" in bars[0].proto.text
    wait_for(lambda: find_bundles(models))  # the run lands its bundle
    at.run()  # AppTest's run() on a page with a run_every fragment is that fragment's next tick
    assert not at.exception
    assert at.header[0].value == "Predict emotions"  # it switched to Predict by itself
    # (AppTest then keeps rerunning the page without app.py, so a new visit shows the rest:
    # tests/test_browser_first_run.py follows one real session through the switch)
    fresh = AppTest.from_file(APP, default_timeout=60).run()
    assert not fresh.exception and fresh.header[0].value == "Predict emotions"
    assert fresh.sidebar.selectbox[0].value.name == "tiny-first"
    fresh.text_area(key="predict_text").input("سعيد اليوم في البيت").run()
    assert not fresh.exception and fresh.get("plotly_chart")


def picker_app():
    """What app.py does before the pages: the picker, moved to a bundle that landed meanwhile."""
    import streamlit as st

    from emoscope.app.first_run import switch_to_new_bundle
    from emoscope.app.sidebar import models_dir, pick_bundle

    switch_to_new_bundle(models_dir())
    st.session_state["bundle_path"] = pick_bundle()


def test_a_new_bundle_is_selected_when_it_lands_and_the_old_one_stays(models, tmp_path, tiny_bundle, tiny_encoder, tiny_data):
    shutil.copytree(tiny_bundle, models / "quick")
    run = jobs.start_training(tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs=20, name="bigger"), models)
    os.killpg(run["pid"], signal.SIGSTOP)  # held until the first checks are done: on a busy machine it could land first
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert at.sidebar.selectbox[0].value.name == "quick" and at.header[0].value == "Predict emotions"
        assert any("Training **bigger**" in c.value for c in at.sidebar.caption)  # the sidebar follows the run
        session = AppTest.from_function(picker_app, default_timeout=60).run()
        assert session.session_state["bundle_path"].name == "quick"
    finally:
        os.killpg(run["pid"], signal.SIGCONT)
    wait_for(lambda: len(find_bundles(models)) == 2)
    session.run()  # the next run of this session (the watcher's tick reruns the app)
    assert not session.exception and session.session_state["bundle_path"].name == "bigger"
    picker = session.sidebar.selectbox[0]
    assert picker.value.name == "bigger" and len(picker.options) == 2
    assert [p.name for p in find_bundles(models)] == ["bigger", "quick"]  # the picker's order: newest first
    picker.select(models / "quick").run()  # the quick bundle stays selectable, and stays selected
    assert session.session_state["bundle_path"].name == "quick"
    session.run()
    assert session.session_state["bundle_path"].name == "quick"
