"""The app in headless Chromium (Debian's ``chromium``) against ``streamlit run app.py``.

Marked slow (a real server and browser). Screenshots go to ``test-output/browser/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from browser import CHROMIUM, ROOT, App, Browser

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                 "(apt-get install chromium; scripts/setup.sh does it when it can)")]
SHOTS = ROOT / "test-output" / "browser"


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_bundle):
    models = tmp_path_factory.mktemp("browser-models")
    shutil.copytree(tiny_bundle, models / "tiny")
    server = App(models)
    yield server
    server.close()


@pytest.fixture
def page(app):
    browser = Browser(app.url)
    yield browser
    browser.close()


def test_arabic_text_gets_a_chart_labels_and_right_to_left_display_then_an_explanation(page):
    page.wait_text("Predict emotions")
    page.type_into("textarea", "أنا سعيد جداً اليوم في البيت 😀 happy")
    page.wait("document.querySelector('.emoscope-text') && document.querySelector('.js-plotly-plot')", 120, "the chart")
    page.wait_text("Predicted")
    assert page.js("document.querySelector('.emoscope-text').getAttribute('dir')") == "rtl"
    assert page.js("getComputedStyle(document.querySelector('.emoscope-text')).direction") == "rtl"
    assert page.js("document.querySelectorAll('.js-plotly-plot .bars path, .js-plotly-plot .point').length") > 0
    page.screenshot(SHOTS / "predict-arabic.png")
    page.click_button("Explain this prediction")
    page.wait_text("Explain a prediction")
    page.click_button("Explain")
    page.wait("document.querySelectorAll('.es-word').length > 3", 120, "highlighted words")
    words = page.js("Array.from(document.querySelectorAll('.es-word')).map(e => e.innerText)")
    assert "سعيد" in words and "😀" in words
    assert page.js("getComputedStyle(document.querySelector('.es-word')).unicodeBidi") == "isolate"
    assert page.js("getComputedStyle(document.querySelector('.es-text')).direction") == "rtl"
    # right to left: the first word sits to the right of the second
    assert page.js("(() => { const w = document.querySelectorAll('.es-word'); "
                   "return w[0].getBoundingClientRect().left > w[1].getBoundingClientRect().left; })()")
    page.screenshot(SHOTS / "explain-arabic.png")


def test_script_text_is_shown_as_text_and_never_runs(page):
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> furious'
    page.wait_text("Predict emotions")
    page.type_into("textarea", evil)
    page.wait("document.querySelector('.emoscope-text')", 120, "the echoed text")
    page.wait_text("Predicted")
    assert page.js("document.querySelector('.emoscope-text').innerText").strip() == evil
    assert page.js("window.__pwned === undefined")
    assert page.js("document.querySelector('.emoscope-text img') === null")
    page.screenshot(SHOTS / "predict-script.png")
