"""The dataset view: layer IG over every text of a dataset, aggregated per label, language and
subset; batched like one text at a time, cached on disk, from the CLI with one-line errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from emoscope.errors import InputError
from emoscope.explain import explain
from emoscope.explain.dataset import dataset_attributions, load_texts
from emoscope.explain.word_summary import WordIndex, subset_mask, summarize, summary_csv
from test_layer_ig import LABELS, ONE_CUE, train_one_cue_stack


@pytest.fixture(scope="module")
def cue_stack(tiny_encoder, tiny_encoder_b, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset-view")
    return train_one_cue_stack(folder, tiny_encoder, tiny_encoder_b), folder / "dev.csv"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def dev_attributions(cue_stack):
    model, dev = cue_stack
    data = load_texts(str(dev), model)
    return model, data, dataset_attributions(model, data.texts, {"n_steps": 8}, cache=False, batch_texts=7)


def test_batched_texts_get_what_each_text_gets_alone(dev_attributions):
    """Texts of different lengths share a padded batch: every score is what layer-ig gives the text alone."""
    model, data, attr = dev_attributions
    for i in (0, 5, 17, 59):
        alone = explain(model, data.texts[i], "layer-ig", None, {"n_steps": 8})
        rows = np.flatnonzero(attr.doc == i)
        for j, label in enumerate(LABELS):
            words = [w for w in alone.words if (w.start, w.end) in set(zip(attr.start[rows], attr.end[rows]))]
            assert len(words) == len(rows)
            np.testing.assert_allclose(attr.scores[rows, j], alone.scores(label)[[alone.words.index(w) for w in words]],
                                       atol=2e-5)
        np.testing.assert_allclose(attr.probabilities[i], model.predict_texts([data.texts[i]])[0], atol=1e-5)


@pytest.mark.parametrize("label", LABELS)
def test_the_word_that_drives_a_label_leads_its_list(dev_attributions, label):
    model, data, attr = dev_attributions
    summary = summarize(attr, model.thresholds, data.gold, data.mask, [label], top_k=5)
    block = summary["labels"][label]["all"]
    top = block["raise"][0]
    assert top["word"] == ONE_CUE[label] and top["count"] == sum(ONE_CUE[label] in t.split() for t in data.texts)
    assert top["mean"] > 2 * max(w["mean"] for w in block["raise"][1:])  # fillers raise it far less
    example = top["examples"][0]
    assert example["text"][example["start"]:example["end"]] == ONE_CUE[label]
    assert summary["languages"] == {"mixed": len(data.texts)} or sum(summary["languages"].values()) == len(data.texts)


def test_false_positive_subset_holds_exactly_those_texts(dev_attributions):
    model, data, attr = dev_attributions
    j = LABELS.index("fear")
    thresholds = np.full(len(LABELS), 0.5)
    thresholds[j] = np.quantile(attr.probabilities[data.gold[:, j] == 0, j], 0.7)  # some texts without the cue pass it
    predicted = (attr.probabilities >= thresholds).astype(np.uint8)
    expected = np.flatnonzero((data.gold[:, j] == 0) & (predicted[:, j] == 1))
    assert len(expected) > 0
    chosen = subset_mask("false-positives", j, predicted, data.gold, data.mask)
    assert np.flatnonzero(chosen).tolist() == expected.tolist()
    summary = summarize(attr, thresholds, data.gold, data.mask, ["fear"], subset="false-positives", min_count=1,
                        n_examples=50)
    block = summary["labels"]["fear"]["all"]
    assert block["texts"] == len(expected)
    seen = {e["text_index"] for w in block["raise"] + block["lower"] for e in w["examples"]}
    assert seen and seen <= set(expected.tolist())
    fn = subset_mask("false-negatives", j, predicted, data.gold, data.mask)
    assert np.flatnonzero(fn).tolist() == np.flatnonzero((data.gold[:, j] == 1) & (predicted[:, j] == 0)).tolist()


def test_gold_subsets_need_gold_labels(dev_attributions):
    model, _, attr = dev_attributions
    with pytest.raises(InputError, match="needs gold labels"):
        summarize(attr, model.thresholds, None, None, subset="errors")
    assert summarize(attr, model.thresholds, None, None, subset="predicted")["subset"] == "predicted"
    with pytest.raises(InputError, match="unknown subset 'nope'"):
        summarize(attr, model.thresholds, None, None, subset="nope")
    with pytest.raises(InputError, match="no text of language xx"):
        summarize(attr, model.thresholds, None, None, languages=["xx"])


def test_the_cache_returns_the_same_result_without_computing(cue_stack, cache, monkeypatch):
    import emoscope.explain.dataset as dataset_module

    model, dev = cue_stack
    texts = load_texts(str(dev), model).texts[:20]
    first = dataset_attributions(model, texts, {"n_steps": 4})
    assert not first.cached and any(cache.rglob("arrays.npz"))

    def no_compute(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(dataset_module, "layer_attributions", no_compute)
    again = dataset_attributions(model, texts, {"n_steps": 4})
    assert again.cached
    np.testing.assert_array_equal(again.scores, first.scores)
    np.testing.assert_array_equal(again.probabilities, first.probabilities)
    assert again.keys == first.keys and again.texts == first.texts
    with pytest.raises(AssertionError, match="recomputed"):  # other steps, other texts: another key
        dataset_attributions(model, texts, {"n_steps": 5})
    with pytest.raises(AssertionError, match="recomputed"):
        dataset_attributions(model, texts[:-1], {"n_steps": 4})


def test_cli_summary_writes_json_and_csv(cue_stack, cache, tmp_path, capsys):
    from emoscope.cli import main

    model, dev = cue_stack
    out = tmp_path / "words.json"
    assert main(["explain", "--model", str(model.predictor.path), "--data", str(dev), "--summary", "--output", str(out),
                 "--csv", "--steps", "6", "--label", "anger", "--subset", "gold", "--top-k", "3"]) == 0
    raw = json.loads(out.read_text(encoding="utf-8"))
    assert raw["subset"] == "gold" and list(raw["labels"]) == ["anger"] and raw["params"] == {"n_steps": 6}
    assert raw["labels"]["anger"]["all"]["raise"][0]["word"] == "furious"
    assert "not input tokens" in raw["attributes_to"]
    rows = list(csv.DictReader((tmp_path / "words.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[0]["label"] == "anger" and rows[0]["direction"] == "raise" and rows[0]["word"] == "furious"
    assert "explaining" in capsys.readouterr().err  # the progress bar


@pytest.mark.parametrize("content,args,message", [
    ("text\nso furious\nvery happy\n", ["--subset", "false-positives"], "needs gold labels"),
    ("", [], "empty"),
    ("tweet\nso furious\n", [], "no 'text' column"),
    ("text\n\n", [], "no texts"),
])
def test_cli_summary_bad_input_is_one_line(cue_stack, cache, tmp_path, capsys, content, args, message):
    from emoscope.cli import main

    model, _ = cue_stack
    path = tmp_path / "upload.csv"
    path.write_text(content, encoding="utf-8")
    assert main(["explain", "--model", str(model.predictor.path), "--data", str(path), "--summary", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_summary_csv_lists_every_word_row(dev_attributions):
    model, data, attr = dev_attributions
    summary = summarize(attr, model.thresholds, data.gold, data.mask, top_k=2, index=WordIndex.of(attr))
    rows = list(csv.reader(summary_csv(summary).splitlines()))
    expected = sum(len(block[d]) for per in summary["labels"].values() for block in per.values() for d in ("raise", "lower"))
    assert len(rows) == 1 + expected


# --- the page ----------------------------------------------------------------------------------


@pytest.fixture
def app_models(cue_stack, tmp_path, monkeypatch):
    import shutil

    model, dev = cue_stack
    shutil.copytree(model.predictor.path, tmp_path / "models" / "cue-stack")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "models", dev


def test_the_page_lists_each_labels_cue_and_shows_it_in_its_texts(app_models):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).parent.parent / "app.py")
    _, dev = app_models
    at = AppTest.from_file(app, default_timeout=180).run()
    at.switch_page("pages/words.py").run()
    at.radio(key="words_source").set_value("an uploaded file").run()
    at.get("file_uploader")[0].upload("dev.csv", dev.read_bytes(), "text/csv")
    at.run()
    assert not at.exception and "not explained with these settings yet" in " ".join(c.value for c in at.caption)
    at.select_slider(key="words_steps").set_value(8).run()
    at.button(key="words_run").click().run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["word"].iloc[0] == ONE_CUE[LABELS[0]]  # raise anger: its cue first
    at.selectbox(key="words_label").set_value("joy").run()
    assert at.dataframe[0].value["word"].iloc[0] == "happy"
    bodies = [h.proto.body for h in at.get("html")]
    assert any('class="es-word"' in b and ">happy</span>" in b for b in bodies)  # the examples, word highlighted
    at.selectbox(key="words_subset").set_value("false-negatives").run()
    assert not at.exception
    # a second visit reads the cache: no button, the same table at once
    again = AppTest.from_file(app, default_timeout=180).run()
    again.switch_page("pages/words.py").run()
    again.radio(key="words_source").set_value("an uploaded file").run()
    again.get("file_uploader")[0].upload("dev.csv", dev.read_bytes(), "text/csv")
    again.run()
    again.select_slider(key="words_steps").set_value(8).run()
    assert not again.exception and "read from the cache" in " ".join(c.value for c in again.caption)
    assert again.dataframe[0].value["word"].iloc[0] == ONE_CUE[LABELS[0]]


def test_the_page_refuses_bad_files_in_one_line(app_models, tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).parent.parent / "app.py")
    for content, message in ((b"tweet\nso furious\n", "no 'text' column"), (b"", "empty")):
        at = AppTest.from_file(app, default_timeout=120).run()
        at.switch_page("pages/words.py").run()
        at.radio(key="words_source").set_value("an uploaded file").run()
        at.get("file_uploader")[0].upload("bad.csv", content, "text/csv")
        at.run()
        assert not at.exception and message in at.error[0].value and "\n" not in at.error[0].value
