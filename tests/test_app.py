"""The Streamlit app through AppTest, against a real tiny bundle (no mocks)."""

import html
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from emoscope.ui import text_html

APP = str(Path(__file__).parent.parent / "app.py")


@pytest.fixture
def models_dir(tmp_path, tiny_bundle, monkeypatch):
    shutil.copytree(tiny_bundle, tmp_path / "tiny")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_no_bundle_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "emoscope train --config" in at.info[0].value


def test_predict_shows_probabilities_and_labels(models_dir):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "tiny" in at.sidebar.selectbox[0].value.name
    at.text_area(key="predict_text").input("سعيد اليوم في البيت").run()
    assert not at.exception
    predicted = [m.value for m in at.markdown if "**joy**" in m.value]
    assert predicted, [m.value for m in at.markdown]
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    shown = [m.value for m in at.markdown if "emoscope-text" in m.value]
    assert shown and 'dir="rtl"' in shown[0]
    assert any("Arabic" in c.value for c in at.caption)


def test_text_from_the_url_is_predicted(models_dir):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["text"] = "we went home furious"
    at.run()
    assert not at.exception
    assert at.text_area(key="predict_text").value == "we went home furious"
    assert any("**anger**" in m.value for m in at.markdown)


def test_empty_text_runs_no_model(models_dir):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_area(key="predict_text").input("   ").run()
    assert not at.exception and not at.get("plotly_chart")


def test_broken_bundle_is_reported_not_crashed(models_dir):
    (models_dir / "tiny" / "model" / "head.safetensors").write_bytes(b"broken")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "cannot be loaded" in at.error[0].value


def test_user_text_is_escaped_and_direction_aware():
    evil = '<script>alert(1)</script> "><img src=x onerror=alert(2)>'
    out = text_html(evil)
    assert "<script>" not in out and "<img" not in out and html.escape(evil) in out
    assert 'dir="auto"' in out
    assert 'dir="rtl"' in text_html("@user أنا سعيد جدا today")
