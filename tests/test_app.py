"""The Streamlit app through AppTest, against a real tiny bundle (no mocks; one test counts model calls)."""

import gc
import html
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import write_tiny_recipe
from streamlit.testing.v1 import AppTest

from emoscope.render import text_html

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
    assert "no trained model yet" in at.info[0].value  # the first-run screen: the Train page
    assert at.selectbox(key="train_recipe").value.stem == "default"
    at.switch_page("pages/predict.py").run()
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
    shown = [h.proto.body for h in at.get("html") if "emoscope-text" in h.proto.body]
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


def _validation(models_dir):
    from emoscope.bundle import read_manifest, read_validation

    path = models_dir / "tiny"
    return read_validation(path, read_manifest(path))


def test_every_page_runs_without_exception(models_dir):
    for page in ("pages/predict.py", "pages/explain.py", "pages/words.py", "pages/thresholds.py", "pages/evaluate.py",
                 "pages/errors.py", "pages/batch.py", "pages/train.py"):
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)


def test_moving_a_threshold_slider_changes_the_metrics_as_emoscope_metrics_computes(models_dir):
    import numpy as np

    from emoscope.metrics import compute_metrics

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/thresholds.py").run()
    validation = _validation(models_dir)
    thresholds = np.array([s.value for s in at.slider])
    before = compute_metrics(validation.labels, validation.probs, thresholds)["macro_f1"]
    assert at.metric[0].value == f"{before:.3f}"
    # A slider move that changes macro-F1 on this run's tiny model (a fixed one, such as joy to
    # 0.95, changes nothing when the model happens to separate that label perfectly).
    moves = [(j, v) for v in (0.95, 0.05, 1.0, 0.0) for j in range(len(thresholds))]
    j, value = next(((j, v) for j, v in moves
                     if compute_metrics(validation.labels, validation.probs,
                                        np.where(np.arange(len(thresholds)) == j, v, thresholds))["macro_f1"] != before),
                    (None, None))
    assert j is not None, "no slider move changes macro-F1 on this validation set"
    key = f"slider::{at.slider[j].label}"
    at.slider(key=key).set_value(value).run()
    assert not at.exception
    thresholds[j] = value
    after = compute_metrics(validation.labels, validation.probs, thresholds)
    assert at.metric[0].value == f"{after['macro_f1']:.3f}"
    assert at.metric[1].value == f"{after['micro_f1']:.3f}"
    assert after["macro_f1"] != before
    at.button[1].click().run()  # reset
    assert at.slider(key=key).value != value


def test_errors_page_lists_exactly_the_misclassified_validation_texts(models_dir):
    import numpy as np

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/errors.py").run()
    validation = _validation(models_dir)
    manifest = json.loads((models_dir / "tiny" / "manifest.json").read_text())
    j = manifest["labels"].index("anger")
    at.selectbox(key="errors_label").select("anger").run()
    for kind, wrong in (("false positives", (validation.probs[:, j] >= manifest["thresholds"][j]) & (validation.labels[:, j] == 0)),
                        ("false negatives", (validation.probs[:, j] < manifest["thresholds"][j]) & (validation.labels[:, j] == 1))):
        at.radio(key="errors_kind").set_value(kind).run()
        assert not at.exception
        shown = set(at.dataframe[0].value["text"])
        assert shown == {validation.texts[i] for i in np.flatnonzero(wrong)}


def test_explain_page_highlights_words(models_dir):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/explain.py").run()
    at.text_area(key="explain_text").input("so furious <b>today</b>").run()
    at.radio(key="explain_method").set_value("attention").run()
    at.button[0].click().run()
    assert not at.exception
    html_blocks = [h.proto.body for h in at.get("html")]
    assert any("es-word" in body for body in html_blocks)
    assert all("<b>today" not in body for body in html_blocks)


def test_batch_file_checks_give_clear_messages(tmp_path):
    from emoscope.errors import InputError
    from emoscope.predict import file_columns

    good = tmp_path / "a.csv"
    good.write_text("id,tweet\n1,hello\n", encoding="utf-8")
    assert file_columns(good) == ["id", "tweet"]
    bad = tmp_path / "b.csv"
    bad.write_bytes("id,text\n1,caf\xe9\n".encode("latin-1") + b"x" * 10)
    with pytest.raises(InputError, match="not valid UTF-8"):
        file_columns(bad)
    empty = tmp_path / "c.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        file_columns(empty)
    with pytest.raises(InputError, match="unsupported file type"):
        file_columns(tmp_path / "d.xlsx")


def _tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs):
    return write_tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs, name="tiny-bg")


def test_background_training_reports_progress_and_the_bundle_appears(tmp_path, tiny_encoder, tiny_data):
    import time

    from emoscope import jobs
    from emoscope.bundle import find_bundles
    from emoscope.errors import InputError

    models = tmp_path / "models"
    jobs.start_training(_tiny_recipe(tmp_path, tiny_encoder, tiny_data, 2), models)
    with pytest.raises(InputError, match="already running"):
        jobs.start_training(_tiny_recipe(tmp_path, tiny_encoder, tiny_data, 2), models)
    for _ in range(600):
        state = jobs.status(models)
        if state["state"] != "running":
            break
        time.sleep(0.2)
    assert state["state"] == "finished", state["log_tail"]
    assert state["epoch"] == 2 and state["loss"] > 0
    assert [p.name for p in find_bundles(models)] == ["tiny-bg"]


def test_cancelled_training_leaves_no_bundle(tmp_path, tiny_encoder, tiny_data):
    import time

    from emoscope import jobs

    models = tmp_path / "models"
    info = jobs.start_training(_tiny_recipe(tmp_path, tiny_encoder, tiny_data, 500), models)
    for _ in range(300):
        if jobs.status(models)["epoch"]:
            break
        time.sleep(0.2)
    assert jobs.cancel(models)
    state = jobs.status(models)
    assert state["state"] == "cancelled" and not jobs._alive(info["pid"])
    assert not (models / "tiny-bg").exists()
    assert not jobs.cancel(models)  # nothing left to cancel


def test_emoscope_model_preselects_a_bundle(models_dir, tiny_bundle, monkeypatch):
    shutil.copytree(tiny_bundle, models_dir / "second")
    monkeypatch.setenv("EMOSCOPE_MODEL", "tiny")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and at.sidebar.selectbox[0].value.name == "tiny"
    monkeypatch.setenv("EMOSCOPE_MODEL", str(tiny_bundle))  # a bundle outside the models folder
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.sidebar.selectbox[0].value == tiny_bundle
    monkeypatch.setenv("EMOSCOPE_MODEL", "/nowhere")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "not a bundle" in at.sidebar.warning[0].value


def test_batch_page_predicts_an_uploaded_file_and_explains_bad_ones(models_dir):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/batch.py").run()
    csv_bytes = "id,tweet\n1,so furious today\n2,\n3,سعيد اليوم\n".encode("utf-8")
    at.get("file_uploader")[0].upload("tweets.csv", csv_bytes, "text/csv")
    at.run()
    assert not at.exception
    assert at.selectbox(key="batch_column").value == "tweet"
    at.button[0].click().run()
    assert not at.exception
    assert "3 rows: 2 predicted, 1 with an empty text" in at.success[0].value
    frame = at.dataframe[0].value
    assert list(frame["tweet"].fillna("")) == ["so furious today", "", "سعيد اليوم"]
    assert {"prob_anger", "anger", "prob_joy", "joy"} <= set(frame.columns)

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/batch.py").run()
    at.get("file_uploader")[0].upload("latin.csv", "text\ncaf\xe9 olé\n".encode("latin-1"), "text/csv")
    at.run()
    assert not at.exception and "not valid UTF-8" in at.error[0].value
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/batch.py").run()
    at.get("file_uploader")[0].upload("rows.jsonl", b'["not", "an object"]\n', "application/json")
    at.run()
    assert not at.exception and "not a JSON object" in at.error[0].value


def test_evaluate_page_scores_an_uploaded_labelled_file_and_rejects_wrong_columns(models_dir, tiny_data):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/evaluate.py").run()
    at.radio[0].set_value("an uploaded labelled file").run()
    at.get("file_uploader")[0].upload("dev.csv", Path(tiny_data["dev"]).read_bytes(), "text/csv")
    at.run()
    assert not at.exception
    assert "60 texts" in " ".join(c.value for c in at.caption)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/evaluate.py").run()
    at.radio[0].set_value("an uploaded labelled file").run()
    at.get("file_uploader")[0].upload("bad.csv", b"sentence,happy\nhello,1\n", "text/csv")
    at.run()
    assert not at.exception and "cannot be used" in at.error[0].value


# --- the page defects of issue 12, each fixed and held here ------------------------------------

PAGES = ("pages/predict.py", "pages/explain.py", "pages/words.py", "pages/thresholds.py", "pages/evaluate.py",
         "pages/errors.py", "pages/batch.py", "pages/train.py")
EVIL = '<script>alert(1)</script><img src=x onerror=alert(2)> so furious'


def _html_bodies(at) -> list[str]:
    return [h.proto.body for h in at.get("html")]


def _button(at, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def test_the_app_modules_behind_the_pages_import_without_streamlit():
    code = ("import sys, emoscope.app, emoscope.app.charts, emoscope.app.sidebar, emoscope.render; "
            "sys.exit('streamlit' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_predict_page_without_a_bundle_says_what_every_page_says(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/predict.py").run()
    on_predict = at.info[0].value
    at.switch_page("pages/thresholds.py").run()
    assert on_predict == at.info[0].value and "Open **Train**" in on_predict


def test_saving_thresholds_reloads_only_that_bundle(models_dir, tiny_bundle):
    from emoscope.app.state import load_predictor
    from emoscope.bundle import manifest_mtime

    second = models_dir / "second"
    shutil.copytree(tiny_bundle, second)
    other = load_predictor(str(second), manifest_mtime(second))  # another user's bundle, loaded
    tiny = models_dir / "tiny"
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="model_picker").set_value(tiny).run()
    at.switch_page("pages/thresholds.py").run()
    before = load_predictor(str(tiny), manifest_mtime(tiny))
    label = at.slider[0].label
    at.slider(key=f"slider::{label}").set_value(0.93).run()
    _button(at, "Save these thresholds").click().run()
    assert not at.exception and "Saved into" in at.success[0].value
    assert f"thresholds::{tiny}" not in at.session_state  # the page shows the saved values from now on
    assert load_predictor(str(second), manifest_mtime(second)) is other  # still loaded, not reloaded
    reloaded = load_predictor(str(tiny), manifest_mtime(tiny))
    assert reloaded is not before and abs(float(reloaded.thresholds[0]) - 0.93) < 1e-6
    at.run()
    assert not at.exception and at.slider(key=f"slider::{label}").value == 0.93


def _batch_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("emoscope-batch-"))


def test_batch_keeps_one_bounded_work_folder_per_session_and_removes_it_with_the_session(models_dir, tmp_path,
                                                                                          monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/batch.py").run()
    at.get("file_uploader")[0].upload("first.csv", b"id,text\n1,so furious today\n", "text/csv")
    at.run()
    _button(at, "Predict").click().run()
    for _ in range(3):
        at.run()
    assert not at.exception
    [folder] = _batch_folders(scratch)
    assert sorted(p.name for p in folder.iterdir()) == ["first-emoscope.csv", "first.csv"]
    at.get("file_uploader")[0].upload("second.csv", b"id,text\n1,so happy today\n", "text/csv")
    at.run()
    _button(at, "Predict").click().run()
    at.run()
    assert not at.exception and _batch_folders(scratch) == [folder]
    assert sorted(p.name for p in folder.iterdir()) == ["second-emoscope.csv", "second.csv"]  # the first upload's went
    del at  # the session ends: its state, and the folder with it, go
    gc.collect()
    assert not folder.exists() and not _batch_folders(scratch)


def test_batch_predicts_under_the_session_thresholds_and_says_so(models_dir):
    from emoscope.predict import Predictor

    texts = ["so furious today", "سعيد اليوم في البيت"]
    assert any(p.labels for p in Predictor(models_dir / "tiny").predict(texts))  # the bundle's thresholds give labels
    labels = json.loads((models_dir / "tiny" / "manifest.json").read_text())["labels"]
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[f"thresholds::{models_dir / 'tiny'}"] = [1.0] * len(labels)
    at.run()
    at.switch_page("pages/batch.py").run()
    at.get("file_uploader")[0].upload("rows.csv", ("text\n" + "\n".join(texts) + "\n").encode("utf-8"), "text/csv")
    at.run()
    assert any("your thresholds from the Thresholds page" in c.value and "1.00" in c.value for c in at.caption)
    _button(at, "Predict").click().run()
    assert not at.exception and "session thresholds" in at.success[0].value
    frame = at.dataframe[0].value
    assert len(frame) == 2 and all((frame[label] == 0).all() for label in labels)


def test_evaluate_predicts_an_uploaded_file_once_across_reruns(models_dir, tiny_data, monkeypatch):
    from emoscope.predict import Predictor

    calls = []
    predict_proba = Predictor.predict_proba

    def counted(self, texts):
        calls.append(len(texts))
        return predict_proba(self, texts)

    monkeypatch.setattr(Predictor, "predict_proba", counted)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/evaluate.py").run()
    at.radio[0].set_value("an uploaded labelled file").run()
    at.get("file_uploader")[0].upload("dev.csv", Path(tiny_data["dev"]).read_bytes(), "text/csv")
    at.run()
    at.selectbox(key="reliability_label").select("joy").run()
    at.run()
    assert not at.exception and "60 texts" in " ".join(c.value for c in at.caption)
    assert calls == [60]


def test_user_text_is_escaped_on_every_page_that_shows_it(models_dir, monkeypatch):
    import dataclasses

    from emoscope.app import state

    read_validation = state.read_validation

    def with_markup(path, manifest):  # validation texts that hold markup (editing the file breaks its hash)
        data = read_validation(path, manifest)
        return dataclasses.replace(data, texts=[f"{EVIL} {text}" for text in data.texts])

    monkeypatch.setattr(state, "read_validation", with_markup)
    n_labels = len(json.loads((models_dir / "tiny" / "manifest.json").read_text())["labels"])
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[f"thresholds::{models_dir / 'tiny'}"] = [0.0] * n_labels  # every negative a false positive
    at.run()
    at.text_area(key="predict_text").input(EVIL).run()
    shown = {"predict": _html_bodies(at)}
    at.switch_page("pages/errors.py").run()
    shown["errors"] = _html_bodies(at)
    at.switch_page("pages/explain.py").run()
    at.text_area(key="explain_text").input(EVIL).run()
    at.radio(key="explain_method").set_value("attention").run()
    _button(at, "Explain").click().run()
    shown["explain"] = _html_bodies(at)
    assert not at.exception
    for page, bodies in shown.items():
        assert any("&lt;" in body and "script" in body for body in bodies), page  # shown, as text
        assert not any("<script" in body or "<img" in body for body in bodies), page


def test_show_html_takes_only_the_renderers_markup():
    from emoscope.app.markup import show_html

    with pytest.raises(TypeError, match="emoscope.render"):
        show_html("<b>not escaped</b>")


@pytest.mark.parametrize("source", ["app.py", *PAGES])
def test_pages_put_html_on_screen_only_through_show_html(source):
    code = (Path(APP).parent / source).read_text(encoding="utf-8")
    assert "unsafe_allow_html" not in code and "st.html(" not in code


# --- the Model page: the selected bundle's model card (issue 13, item 3) -----------------------

def _main_texts(at) -> list[str]:
    """Every Markdown-bearing element in the page's main area (the card's sections)."""
    return [e.value for kind in ("header", "subheader", "markdown", "caption", "info")
            for e in getattr(at.main, kind)]


def test_model_page_shows_the_bundles_card_with_its_training_curves(models_dir):
    from emoscope.bundle import read_manifest, read_training_log
    from emoscope.card import card_sections
    from emoscope.render import escape_markdown

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/model.py").run()
    assert not at.exception
    manifest = read_manifest(models_dir / "tiny")
    assert [s.value for s in at.subheader] == [s.title for s in card_sections(manifest, None, [])]
    shown = "\n".join(_main_texts(at))
    for label, row in manifest.metrics["validation"]["per_class"].items():
        assert f"| {escape_markdown(label)} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |" in shown
    assert f"| {escape_markdown(manifest.data['train'])} | {manifest.data['n_train']} |" in shown
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    log = read_training_log(models_dir / "tiny")
    loss = next(t for t in figure["data"] if t["name"] == "training loss")
    assert loss["y"] == [r["train_loss"] for r in log]
    assert at.code[0].language == "toml" and f'name = "{manifest.name}"' in at.code[0].value
    at.toggle(key="model_class_loss").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_model_page_writes_the_card_into_a_bundle_trained_without_one(models_dir):
    from emoscope.bundle import read_manifest
    from emoscope.card import CARD

    bundle = models_dir / "tiny"
    raw = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    for name in list(raw["files"]):
        if name in (CARD, "training_curves.svg"):
            (bundle / name).unlink()
            del raw["files"][name]
    (bundle / "manifest.json").write_text(json.dumps(raw, ensure_ascii=False, indent=1), encoding="utf-8")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/model.py").run()
    assert not at.exception and "trained before model cards" in at.info[0].value
    assert len(at.subheader) == 12  # drawn from the manifest all the same
    _button(at, "Write the card into the bundle").click().run()
    assert not at.exception and not at.info
    assert CARD in read_manifest(bundle, verify=True).files and (bundle / CARD).exists()


def test_model_page_escapes_the_bundles_name_description_and_labels(evil_bundle, tmp_path, monkeypatch):
    shutil.copytree(evil_bundle, tmp_path / "evil")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/model.py").run()
    assert not at.exception
    shown = _main_texts(at)
    assert any("&lt;script&gt;" in text for text in shown) and any(r"\[fear\]" in text for text in shown)
    assert not any("<script" in t or "<img" in t or "](http" in t or "**bold** " in t for t in shown)


def test_the_model_page_puts_html_on_screen_only_through_show_html():
    code = (Path(APP).parent / "pages/model.py").read_text(encoding="utf-8")
    assert "unsafe_allow_html" not in code and "st.html(" not in code


# --- the Train page: a tiny run watched live (issue 13, item 2) ----------------------------------


@pytest.fixture
def train_page(tmp_path, monkeypatch):
    """No bundle (the app lands on Train), a private cache, and a folder of tiny recipes the page offers."""
    models, recipes = tmp_path / "models", tmp_path / "recipes"
    recipes.mkdir()
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(models))
    monkeypatch.setenv("EMOSCOPE_RECIPES_DIR", str(recipes))
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return models, recipes


def _finish_run(at, models, timeout=240.0):
    """Poll the background run until it ends, then draw the page once more."""
    import time

    from emoscope import jobs

    deadline = time.monotonic() + timeout
    while jobs.status(models)["state"] == "running":
        assert time.monotonic() < deadline, jobs.status(models)["log_tail"]
        time.sleep(0.3)
    at.run()
    assert not at.exception
    return jobs.status(models)


def _start(at, recipe: Path):
    at.selectbox(key="train_recipe").set_value(recipe).run()
    _button(at, "Start training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def _figures(at) -> dict[str, dict]:
    return {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def test_train_page_plots_loss_and_validation_f1_of_a_tiny_run(train_page, tiny_encoder, tiny_data):
    models, recipes = train_page
    shutil.copy(_tiny_recipe(recipes.parent, tiny_encoder, tiny_data, 3), recipes / "tiny.toml")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.text_input(key="train_specs_tiny").value == str(tiny_data["train"])  # prefilled from the recipe
    _start(at, recipes / "tiny.toml")
    state = _finish_run(at, models)
    assert state["state"] == "finished", state["log_tail"]
    figures = _figures(at)
    loss, f1 = figures["Training loss"]["data"], figures["Validation macro-F1"]["data"]
    assert [t["x"] for t in loss] == [[1, 2, 3]] and all(y > 0 for y in loss[0]["y"])
    epochs = state["progress"].epochs
    assert f1[0]["y"] == [e["val_macro_f1"] for e in epochs]
    at.checkbox(key="train_per_class").check().run()
    per_class = _figures(at)[f"Validation F1 per label: {epochs[0]['series']}"]["data"]
    assert {t["name"] for t in per_class} == {"anger", "fear", "joy", "sadness"}
    assert any("Done" in s.value for s in at.success)


def test_train_page_trains_on_the_data_chosen_there(train_page, tiny_encoder, tiny_data):
    from conftest import make_rows, write_brighter_csv
    from emoscope.bundle import read_manifest

    models, recipes = train_page
    shutil.copy(_tiny_recipe(recipes.parent, tiny_encoder, tiny_data, 1), recipes / "tiny.toml")
    other = write_brighter_csv(recipes.parent / "other-train.csv", make_rows(120, seed=21))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="train_specs_tiny").input("nosuch:xx:train").run()
    _button(at, "Start training").click().run()
    assert "unknown corpus 'nosuch'" in at.error[0].value and jobs_state(models) is None  # one line, no run
    at.text_input(key="train_specs_tiny").input(str(other)).run()
    _button(at, "Start training").click().run()
    assert _finish_run(at, models)["state"] == "finished"
    manifest = read_manifest(models / "tiny-bg")
    assert manifest.train_data == str(other) and manifest.n_train == 120
    # An uploaded labelled file is kept in the runs folder and trained on.
    upload = "text,anger,fear,joy,sadness\n" + "\n".join(
        f"{r['text']},{r['anger']},{r['fear']},{r['joy']},{r['sadness']}" for r in make_rows(90, seed=22))
    at.get("file_uploader")[0].upload("mine.csv", upload.encode(), "text/csv")
    at.run()
    _button(at, "Start training").click().run()
    assert not at.error and _finish_run(at, models)["state"] == "finished"
    manifest = read_manifest(models / "tiny-bg")
    assert manifest.train_data.endswith("-mine.csv") and "/.runs/data/" in manifest.train_data
    assert manifest.n_train == 90


def jobs_state(models):
    from emoscope import jobs

    return jobs.current(models)


def test_train_page_shows_a_stacked_runs_stages(train_page, tiny_encoder, tiny_encoder_b, tiny_data):
    from test_progress import stack_recipe

    models, recipes = train_page
    stack_recipe(recipes / "tiny-stack.toml", tiny_encoder, tiny_encoder_b, tiny_data)
    at = AppTest.from_file(APP, default_timeout=60).run()
    _start(at, recipes / "tiny-stack.toml")
    assert _finish_run(at, models)["state"] == "finished"
    shown = [m.value for m in at.markdown]
    assert any(s.startswith("**Stage 1 of 3 · fine-tuning**: 3 of 3 models finished") for s in shown), shown
    assert any("**Stage 2 of 3 · embedding**: ft 380 of 380 texts (0 from the cache) · fz 220 of 220" in s
               for s in shown), shown
    assert any(s.startswith("**Stage 3 of 3 · meta-learner**: epoch 4 of 4") for s in shown), shown
    figures = _figures(at)
    assert [t["name"] for t in figures["Stage 1 · validation macro-F1"]["data"]] == \
        ["ft full", "ft fold-1", "ft fold-2"]
    meta = figures["Meta-learner · training loss"]["data"]
    assert [t["name"] for t in meta] == ["meta-learner"] and meta[0]["x"] == [1, 2, 3, 4]


def test_train_page_says_in_one_line_why_a_run_failed(train_page, tiny_encoder, tiny_data):
    from conftest import make_rows, write_brighter_csv

    models, recipes = train_page
    rows = [{**r, "anger": 0, "fear": 0, "joy": 0, "sadness": 0} for r in make_rows(30, seed=5)]
    no_positives = write_brighter_csv(recipes.parent / "no-positives.csv", rows)
    recipe = _tiny_recipe(recipes.parent, tiny_encoder, tiny_data, 1)
    (recipes / "tiny.toml").write_text(recipe.read_text().replace(str(tiny_data["dev"]), str(no_positives)))
    at = AppTest.from_file(APP, default_timeout=60).run()
    _start(at, recipes / "tiny.toml")
    state = _finish_run(at, models)
    assert state["state"] == "failed"
    assert state["reason"].startswith("the validation set") and "no positive labels" in state["reason"]
    assert "\n" not in state["reason"]
    from emoscope.render import escape_markdown

    assert at.error[0].value == f"**The run failed:** {escape_markdown(state['reason'])}"  # shown as text


def test_sidebar_caption_shows_a_bundles_labels_as_text(evil_bundle):
    from emoscope.app.sidebar import bundle_caption
    from emoscope.bundle import read_manifest

    caption = bundle_caption(read_manifest(evil_bundle))
    assert "[fear](http" not in caption and "<script>" not in caption
    assert r"\[fear\]" in caption and "&lt;script&gt;" in caption
