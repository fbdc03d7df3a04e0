"""The stack's TF-IDF base (``[[bases]] kind = "tfidf"``): out-of-fold logits, the bundle, explanations."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_stack_config

from emoscope.bundle import PICKLE_SUFFIXES, read_manifest
from emoscope.config import BaseConfig, RunConfig, StackConfig
from emoscope.errors import BundleError, ConfigError
from emoscope.explain import explain
from emoscope.models import pick_device
from emoscope.predict import Predictor
from emoscope.tfidf import TfidfModel, text_of_words
from emoscope.training import train_stack
from emoscope.training.run import load_run_data
from emoscope.training.stack import stage2
from emoscope.training.stack.leakage import LeakageError
from emoscope.training.stack.stage1 import StackTexts
from emoscope.training.stack.text_bases import BaseFit, _read, fit_text_base

TEXTS = ["I am so happy today", "what a sad and crying day", "angry and furious", "scared of the dark"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))


def quiet(_: str) -> None:
    pass


def tfidf_stack(tiny_encoder, tiny_data, folds: int = 2, **training) -> RunConfig:
    """A frozen tiny encoder (no fine-tuning, so the test is about the TF-IDF base) + a TF-IDF base."""
    config = tiny_stack_config([(tiny_encoder, False)], tiny_data, folds=folds, **training)
    return config.replace(bases=(BaseConfig(kind="tfidf", min_df=1),))


@pytest.fixture(scope="module")
def tfidf_bundle(tmp_path_factory, tiny_encoder, tiny_data) -> Path:
    config = tfidf_stack(tiny_encoder, tiny_data)
    with pytest.MonkeyPatch.context() as mp:  # a cache of its own (the autouse one is per test)
        mp.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("tfidf-cache")))
        return train_stack(config, tmp_path_factory.mktemp("tfidf") / "stack", progress=False, log=quiet,
                           work=tmp_path_factory.mktemp("work"))


def test_the_recipe_section_round_trips_and_is_checked(tiny_encoder, tiny_data):
    config = tfidf_stack(tiny_encoder, tiny_data)
    raw = config.to_dict()
    assert raw["bases"] == [{"kind": "tfidf", "name": "", "min_df": 1, "C": 1.0}]
    assert RunConfig.from_dict(raw) == config
    assert "bases" not in config.replace(bases=()).to_dict()  # older recipes record what they always did
    with pytest.raises(ConfigError, match="bases.kind must be one of tfidf"):
        RunConfig.from_dict({**raw, "bases": [{"kind": "bm25"}]})
    with pytest.raises(ConfigError, match=r"bases\[0\]: unknown key\(s\) ngrams"):
        RunConfig.from_dict({**raw, "bases": [{"kind": "tfidf", "ngrams": 3}]})
    with pytest.raises(ConfigError, match="add a \\[stack\\] section"):
        config.replace(stack=None)
    with pytest.raises(ConfigError, match="tiny0 appear twice"):
        config.replace(bases=(BaseConfig(kind="tfidf", name="tiny0"),))


def test_a_saved_model_predicts_exactly_what_the_fitted_one_did(tmp_path):
    labels = np.array([[1, 0], [0, 1], [0, 0], [1, 0]])
    model = TfidfModel.fit(TEXTS, labels, min_df=1)
    model.save(tmp_path, ["joy", "sadness"])
    loaded = TfidfModel.load(tmp_path, ["joy", "sadness"])
    new = ["happy happy", "so sad", "a day in the dark"]
    np.testing.assert_array_equal(loaded.logits(new), model.logits(new))
    assert not any(p.name.endswith(PICKLE_SUFFIXES) for p in tmp_path.iterdir())
    with pytest.raises(BundleError, match="other labels"):
        TfidfModel.load(tmp_path, ["joy", "anger"])


def test_a_label_masked_out_is_never_fit_on():
    """A text's unannotated label does not change the fit: flipping it gives the same model."""
    labels = np.array([[1, 0], [0, 1], [0, 0], [1, 1]])
    mask = np.ones_like(labels, dtype=bool)
    mask[3, 1] = False
    flipped = labels.copy()
    flipped[3, 1] = 0
    a, b = TfidfModel.fit(TEXTS, labels, mask, min_df=1), TfidfModel.fit(TEXTS, flipped, mask, min_df=1)
    np.testing.assert_array_equal(a.logits(TEXTS), b.logits(TEXTS))
    assert not np.array_equal(TfidfModel.fit(TEXTS, labels, min_df=1).logits(TEXTS), a.logits(TEXTS))


@pytest.mark.parametrize("folds", [2, 0])
def test_training_logits_are_out_of_fold(tiny_encoder, tiny_data, folds):
    """Each training text's logits come from the fit on the other folds (recomputed here from
    scratch), never from a fit that saw the text; validation texts read the fit on all."""
    config = tfidf_stack(tiny_encoder, tiny_data, folds=folds)
    data = load_run_data(config, quiet)
    texts = StackTexts.read(config, data)
    stack_folds = np.arange(len(data.train)) % 2 if folds else None
    base = fit_text_base(config.bases[0], config, data, texts, stack_folds, quiet)
    if folds:
        np.testing.assert_array_equal(base.folds, stack_folds)  # the stack's own folds
    else:
        assert set(base.folds) == set(range(5))  # naive stacking: five folds of its own
    docs = [text_of_words(w) for w in texts.words["train"]]
    train = base.logits["train"].flat
    for f, fit in enumerate(base.fold_fits):
        held = np.flatnonzero(base.folds == f)
        assert not fit.trained_on & {texts.keys["train"][i] for i in held}
        rest = np.flatnonzero(base.folds != f)
        refit = TfidfModel.fit([docs[i] for i in rest], data.train.labels[rest], min_df=1)
        np.testing.assert_allclose(train[held], refit.logits([docs[i] for i in held]), rtol=1e-5, atol=1e-5)
    naive = base.logits["train-naive"].flat
    np.testing.assert_allclose(naive, base.full.model.logits(docs), rtol=1e-5, atol=1e-5)
    # a fit that saw the texts scores them differently: the out-of-fold logits are not the full fit's
    assert np.abs(naive - train).mean() > 0.1
    val_docs = [text_of_words(w) for w in texts.words["validation"]]
    np.testing.assert_allclose(base.logits["validation"].flat, base.full.model.logits(val_docs), rtol=1e-5, atol=1e-5)


def test_the_gate_refuses_a_fit_reading_its_own_training_texts():
    model = TfidfModel.fit(TEXTS, np.array([[1], [0], [0], [1]]), min_df=1)
    fit = BaseFit("tfidf", "fold-1", frozenset({"a"}), model)
    out = np.zeros((2, 1))
    with pytest.raises(LeakageError, match="tfidf/fold-1 was fine-tuned on 1 of the 2"):
        _read(fit, TEXTS[:2], ["a", "b"], np.arange(2), out)


def test_the_meta_learner_reads_the_tfidf_logits(tiny_encoder, tiny_data, tmp_path):
    config = tfidf_stack(tiny_encoder, tiny_data)
    data = load_run_data(config, quiet)
    stacked = stage2.prepare_stack(config, data, device=pick_device("cpu"), work=tmp_path / "w", progress=False,
                                   log=quiet)
    n_labels = len(data.train.label_names)
    assert stacked.base_logits == {}  # the frozen encoder has no classifier
    assert stacked.select_base(["tiny0"], "train").shape == (len(data.train), n_labels)
    np.testing.assert_array_equal(stacked.select_base(["tiny0"], "train"), stacked.text_bases["tfidf"].logits["train"].flat)
    assert stacked.select_base(["tiny0"], "train", text_bases=[]) is None


def test_the_bundle_stores_the_base_without_pickles_and_predicts_identically(tfidf_bundle):
    manifest = read_manifest(tfidf_bundle)
    assert manifest.model.bases == [{"kind": "tfidf", "name": "tfidf", "path": "bases/0-tfidf", "min_df": 1,
                                     "C": 1.0, "folds": 2}]
    assert "model/bases/0-tfidf/tfidf.safetensors" in manifest.files
    assert "model/bases/0-tfidf/vocabulary.json" in manifest.files
    assert not any(name.endswith(PICKLE_SUFFIXES) for name in manifest.files)
    card = (tfidf_bundle / "README.md").read_text(encoding="utf-8")
    assert "- tfidf: tfidf, word 1–2-grams and character 2–5-grams (min_df 1, C 1), one logistic regression per label, logits out of fold over 2 folds" in card
    texts = ["I am so happy today", "sad sad day", "حزين اليوم"]
    first = Predictor(tfidf_bundle).model.predict_proba(texts)
    np.testing.assert_array_equal(Predictor(tfidf_bundle).model.predict_proba(texts), first)
    # the validation texts as stage 2 and 3 scored them (the same batches: padding moves the tiny
    # encoder's outputs by ~1e-5, as test_stack allows)
    validation = json.loads((tfidf_bundle / "validation.json").read_text(encoding="utf-8"))
    again = Predictor(tfidf_bundle).predict_proba(validation["texts"])
    np.testing.assert_allclose(again, np.asarray(validation["probs"]), atol=2e-5)


def test_the_tfidf_base_moves_the_prediction(tfidf_bundle):
    """The base is read at prediction time: zeroing its weights in the meta-learner changes the output."""
    model = Predictor(tfidf_bundle).model
    assert model.text_base_names == ["tfidf"]
    before = model.predict_proba(TEXTS)
    model.meta.base_weight.data.zero_()
    assert not np.allclose(model.predict_proba(TEXTS), before)


def test_a_bundle_whose_base_was_removed_is_refused(tfidf_bundle, tmp_path):
    copy = tmp_path / "edited"
    shutil.copytree(tfidf_bundle, copy)
    raw = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    raw["model"].pop("bases")
    (copy / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match="the meta-learner reads \\[tfidf\\]"):
        Predictor(copy)


@pytest.mark.parametrize("method, covers", [("lime", "whole model"), ("ig", "encoders' path only"),
                                             ("attention", "encoders' path only")])
def test_every_explainer_runs_and_says_what_it_covers(tfidf_bundle, method, covers):
    params = {"lime": {"samples": 20}, "ig": {"n_steps": 4}, "attention": {}}[method]
    result = explain(Predictor(tfidf_bundle), "I am so happy today", method, params=params)
    assert len(result.words) == 5
    assert covers in result.diagnostics["coverage"]
    assert "tfidf" in result.diagnostics["coverage"]


def test_a_stack_without_bases_explains_as_before(tiny_encoder, tiny_data, tmp_path):
    config = replace(tfidf_stack(tiny_encoder, tiny_data), bases=(), stack=StackConfig(folds=0, max_words=16))
    path = train_stack(config.replace(meta=replace(config.meta, epochs=2)), tmp_path / "plain", progress=False,
                       log=quiet, work=tmp_path / "w")
    assert read_manifest(path).model.bases is None
    assert "coverage" not in explain(Predictor(path), "happy day", "ig", params={"n_steps": 4}).diagnostics
