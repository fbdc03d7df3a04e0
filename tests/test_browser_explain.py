"""Progressive explanations in headless Chromium (Debian's ``chromium``) against ``streamlit run
app.py``: LIME shows a first estimate, then the final one, in place and without a reload; Stop
keeps the estimate, marked partial (issue 15, item 2).

A real server and browser over the tiny bundle of conftest; marked slow like the other browser
tests. A ``MutationObserver`` installed in the page records every estimate it shows, however
briefly (the tiny model is fast). Screenshots go to ``test-output/browser/``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from browser import CHROMIUM, ROOT, App, Browser

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                 "(apt-get install chromium; scripts/setup.sh does it when it can)")]
SHOTS = ROOT / "test-output" / "browser"
TEXT = "we were so scared and angry today, then happy again at home with friends 😀"
SAME_PAGE = "window.__emoscope_same_page === 1"  # set once; a reload would clear it
# every estimate caption the page shows ("LIME · estimate from 16 of 500 samples (partial) · …"), in order
WATCH = """(() => {
  window.__emoscope_same_page = 1;
  window.__estimates = [];
  new MutationObserver(() => {
    for (const e of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      const m = e.innerText.match(/estimate from ([0-9,]+) of ([0-9,]+) samples/);
      if (m && !window.__estimates.includes(m[1])) window.__estimates.push(m[1]);
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
})()"""
FINAL = ("Array.from(document.querySelectorAll('[data-testid=\"stCaptionContainer\"]'))"
         ".some(e => /faithfulness for /.test(e.innerText))")


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_bundle):
    models = tmp_path_factory.mktemp("browser-explain-models")
    shutil.copytree(tiny_bundle, models / "tiny")
    server = App(models)
    yield server
    server.close()


@pytest.fixture
def page(app):
    browser = Browser(app.url)
    yield browser
    browser.close()


def open_lime(page, samples: str) -> None:
    """The Explain page with the text and LIME chosen, the samples slider moved up to ``samples``."""
    page.wait_text("Predict emotions")
    page.type_into("textarea", TEXT)
    page.wait_text("Predicted")
    page.click_button("Explain this prediction")
    page.wait_text("Explain a prediction")
    option = ("Array.from(document.querySelectorAll('[data-testid=\"stRadioOption\"]'))"
              ".find(l => l.innerText.trim() === 'LIME')")
    page.wait(option, 60, "the LIME option")
    page.js(f"{option}.click()")
    slider = "document.querySelector('[data-testid=\"stSlider\"] input[type=range]')"
    page.wait(slider, 60, "the samples slider")
    value = f"{slider}.getAttribute('aria-valuetext')"
    for _ in range(10):  # one preset up per key press that lands (the first may come before the page is ready)
        before = page.js(value)
        if before == samples:
            break
        page.js(f"{slider}.focus()")
        page.call("Input.dispatchKeyEvent", type="keyDown", key="ArrowRight", code="ArrowRight", windowsVirtualKeyCode=39)
        page.call("Input.dispatchKeyEvent", type="keyUp", key="ArrowRight", code="ArrowRight", windowsVirtualKeyCode=39)
        deadline = time.time() + 15  # the rerun it causes: longer on a busy machine than a fixed sleep allowed
        while time.time() < deadline and page.js(value) == before:
            time.sleep(0.25)
        time.sleep(0.5)
    assert page.js(f"{slider}.getAttribute('aria-valuetext')") == samples
    page.js(WATCH)


def test_progressive_lime_shows_a_first_estimate_then_the_final_one_without_a_reload(page):
    open_lime(page, "500")  # 500 samples, the page's default
    page.click_button("Explain")
    page.wait(FINAL, 180, "the final explanation")
    estimates = [int(x.replace(",", "")) for x in page.js("window.__estimates")]
    assert estimates and estimates[0] < 500 and estimates == sorted(estimates), estimates
    assert page.js(SAME_PAGE), "the page was reloaded"
    page.wait("document.querySelectorAll('.es-word').length > 5", 60, "the final explanation's words")
    assert not page.js("document.body.innerText.includes('(partial)')")  # the estimate was replaced in place
    page.screenshot(SHOTS / "explain-lime-final.png")


def test_stop_keeps_the_estimate_marked_partial(page):
    open_lime(page, "2000")  # 2,000 samples: long enough to stop on the tiny model
    page.click_button("Explain")
    page.wait("window.__estimates.length > 0", 120, "a first estimate")
    page.click_button("Stop", within=".st-key-explain_stop")  # the page's Stop, not the toolbar's (it ends the run)
    page.wait_text("Stopped: estimate from", 120)
    shown = page.js("document.body.innerText")
    done = int(shown.split("Stopped: estimate from ")[1].split(" of ")[0].replace(",", ""))
    assert 0 < done < 2000 and "of 2,000 samples (partial)" in shown
    assert page.js(SAME_PAGE), "the page was reloaded"
    # the warning is drawn before the words that follow it in the same rerun: wait for them, do not race them
    page.wait("document.querySelectorAll('.es-word').length > 5", 60, "the stopped estimate's words")
    page.screenshot(SHOTS / "explain-lime-stopped.png")
