"""The first run in headless Chromium: no bundle and a run in progress → a progress screen that
turns into Predict without a reload; later, a run's new bundle is picked by itself.

A real ``streamlit run app.py`` and Debian's ``chromium`` (tests/browser.py), a real background
run of a tiny recipe (the tiny encoder and data of conftest, so it takes seconds, not the real
``quick`` recipe). Marked slow. Screenshots go to ``test-output/browser/``.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from browser import CHROMIUM, ROOT, App, Browser
from emoscope import jobs
from emoscope.app.first_run import start_if_needed
from test_first_run import tiny_recipe

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                 "(apt-get install chromium; scripts/setup.sh does it when it can)")]
SHOTS = ROOT / "test-output" / "browser"
SAME_PAGE = "window.__emoscope_same_page === 1"  # set once; a reload would clear it
PICKER = '[data-testid="stSidebar"] [data-testid="stSelectbox"] input'


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    yield folder
    jobs.cancel(folder)


def serve(models: Path):
    app = App(models)
    try:
        browser = Browser(app.url)
    except BaseException:
        app.close()
        raise
    return app, browser


def serve_held(models: Path, pid: int):
    """Stop the run's process group, then serve: on a busy machine a tiny run could land before
    the page has shown it in progress. The caller sends SIGCONT; a failed start sends it here."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        return serve(models)
    except BaseException:
        os.killpg(pid, signal.SIGCONT)
        raise


def test_first_run_shows_progress_then_predicts_without_a_reload(models, tmp_path, tiny_encoder, tiny_data):
    run = start_if_needed(models, tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs=150))
    assert run is not None
    app, page = serve_held(models, run["pid"])  # held until the progress screen is seen
    held = True
    try:
        page.wait_text("Getting EmoScope ready", 60)
        page.wait("document.querySelector('[data-testid=\"stProgress\"]')", 60, "the progress bar")
        page.wait_text("tiny-first", 60)
        page.js("window.__emoscope_same_page = 1")
        page.screenshot(SHOTS / "first-run-progress.png")
        assert not page.js("document.body.innerText.includes('Predict emotions')")
        os.killpg(run["pid"], signal.SIGCONT)
        held = False
        page.wait_text("Predict emotions", 240)  # the bundle landed: the page turned into Predict by itself
        assert page.js(SAME_PAGE), "the page was reloaded"
        page.wait_text("Model: tiny-first", 60)
        for text in ("أنا سعيد جداً اليوم في البيت", "we went home furious and angry"):
            page.type_into("textarea", text)
            page.wait(f"document.querySelector('.emoscope-text') && "
                      f"document.querySelector('.emoscope-text').innerText.trim() === {text!r}", 120, "the echoed text")
            page.wait_text("Predicted", 60)
            page.wait("document.querySelector('.js-plotly-plot')", 60, "the chart")
        assert page.js(SAME_PAGE)
        page.screenshot(SHOTS / "first-run-predict.png")
    finally:
        if held:
            os.killpg(run["pid"], signal.SIGCONT)
        page.close()
        app.close()


def test_a_run_that_lands_later_is_picked_by_itself_and_the_old_bundle_stays(models, tmp_path, tiny_bundle,
                                                                              tiny_encoder, tiny_data):
    shutil.copytree(tiny_bundle, models / "quick")
    run = jobs.start_training(tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs=100, name="bigger"), models)
    app, page = serve_held(models, run["pid"])  # held until the sidebar has shown it
    held = True
    try:
        page.wait_text("Predict emotions", 60)
        page.wait_text("Training bigger", 60)  # the sidebar follows the run
        page.js("window.__emoscope_same_page = 1")
        os.killpg(run["pid"], signal.SIGCONT)
        held = False
        page.wait_text("Model: bigger", 240)  # its bundle landed: the picker moved to it
        assert page.js(SAME_PAGE), "the page was reloaded"
        assert page.js(f"document.querySelector({PICKER!r}).value").startswith("bigger")
        page.js(f"document.querySelector({PICKER!r}).focus()")
        for kind in ("keyDown", "keyUp"):  # open the picker's list as a keyboard user does
            page.call("Input.dispatchKeyEvent", type=kind, key="ArrowDown", code="ArrowDown", windowsVirtualKeyCode=40)
        page.wait("document.querySelectorAll('[role=\"option\"]').length === 2", 30, "two bundles in the picker")
        options = page.js("Array.from(document.querySelectorAll('[role=\"option\"]')).map(o => o.innerText)")
        assert options[0].startswith("bigger") and options[1].startswith("tiny"), options  # newest first; both there
        page.screenshot(SHOTS / "new-bundle-picked.png")
    finally:
        if held:
            os.killpg(run["pid"], signal.SIGCONT)
        page.close()
        app.close()
