"""``stack.new_text_reader = "fold"``: a fine-tuned encoder's ``fold-1`` model, not ``full``, reads
validation, eval and new texts and goes into the bundle, so new texts are read as the meta-learner's
training texts are (out of fold). The leakage gate still holds; the naive variant keeps ``full``."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import spy_on_leakage_gate, tiny_stack_config
from emoscope.config import StackConfig
from emoscope.data import load_training_data
from emoscope.errors import ConfigError
from emoscope.training import train_stack
from emoscope.training.stack import stage2
from emoscope.training.stack.stage1 import StackTexts, run_stage1


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))


def quiet(_: str) -> None:
    pass


def fold_reader_config(tiny_encoder, tiny_encoder_b, tiny_data, **training):
    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, False)], tiny_data, folds=3, **training)
    return config.replace(stack=replace(config.stack, new_text_reader="fold"))


def test_the_first_fold_model_reads_new_texts_and_full_reads_the_naive_variant(tiny_encoder, tiny_encoder_b,
                                                                                tiny_data, tmp_path, monkeypatch):
    config = fold_reader_config(tiny_encoder, tiny_encoder_b, tiny_data, epochs=1)
    data = load_training_data(config)
    data.validation.texts[0] = data.train.texts[5]  # a validation text that is also a training text
    texts = StackTexts.read(config, data)
    stage_one = run_stage1(config, data, texts, tmp_path / "work", device=torch.device("cpu"), log=quiet,
                           progress=False)
    assert stage_one.models["tiny0"].role == "fold-1" and stage_one.full_models["tiny0"].role == "full"
    assert stage_one.models["tiny1"].role == "pretrained"
    jobs = stage2.plan_reads("tiny0", stage_one, texts)
    roles = {(j.split, j.model.role): len(j.positions) for j in jobs if len(j.positions)}
    assert ("train-naive", "full") in roles and not any(r == "full" for s, r in roles if s != "train-naive")
    # every training text is read once, each by the fold model that held it out
    train_jobs = [j for j in jobs if j.split == "train" and len(j.positions)]
    read = np.concatenate([j.positions for j in train_jobs])
    assert sorted(read.tolist()) == list(range(len(data.train)))
    for j in train_jobs:
        assert set(stage_one.folds[j.positions]) == {int(j.model.role.split("-")[1]) - 1}
    # the validation text that is also a training text goes to the fold model that held it out
    key = texts.keys["validation"][0]
    holder = next(j.model for j in jobs if j.split == "validation" and 0 in j.positions)
    assert key not in holder.trained_on and key in stage_one.full_models["tiny0"].trained_on
    calls = spy_on_leakage_gate(monkeypatch)
    stage2.prepare_stack(config, data, device=torch.device("cpu"), work=tmp_path / "work", progress=False, log=quiet)
    for model, keys, allow_seen in calls:
        if model.role != "pretrained" and not allow_seen:
            assert not set(keys) & model.trained_on, f"{model.encoder}/{model.role} read a text it was trained on"
    assert {m.role for m, _, seen in calls if seen and m.role != "pretrained"} == {"full"}


def test_a_bundle_with_fold_readers_holds_the_first_fold_model_and_predicts_identically(
        tiny_encoder, tiny_encoder_b, tiny_data, tmp_path):
    from emoscope.bundle import read_manifest, read_validation
    from emoscope.predict import Predictor

    config = fold_reader_config(tiny_encoder, tiny_encoder_b, tiny_data)
    path = train_stack(config, tmp_path / "stack", progress=False, log=quiet)
    manifest = read_manifest(path)
    fold_one = next((tmp_path / "cache" / "stack-work").glob("*/stage1/tiny0-*/fold-1/info.json"))
    full = fold_one.parent.parent / "full" / "info.json"
    fingerprints = {json.loads(p.read_text(encoding="utf-8"))["fingerprint"] for p in (fold_one, full)}
    assert len(fingerprints) == 2  # the two models differ, and the bundle holds fold-1's
    assert manifest.model.encoders[0].fingerprint == json.loads(fold_one.read_text(encoding="utf-8"))["fingerprint"]
    validation = read_validation(path, manifest)
    np.testing.assert_allclose(Predictor(path).predict_proba(validation.texts), validation.probs, atol=2e-5)
    # the default bundle holds full's model
    default = train_stack(config.replace(stack=replace(config.stack, new_text_reader="full")), tmp_path / "default",
                          progress=False, log=quiet)
    assert read_manifest(default).model.encoders[0].fingerprint == json.loads(full.read_text(encoding="utf-8"))["fingerprint"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"new_text_reader": "fold-2"}, "stack.new_text_reader must be one of full, fold"),
    ({"new_text_reader": "fold", "folds": 0}, "needs out-of-fold stacking"),
])
def test_new_text_reader_is_checked(settings, message):
    with pytest.raises(ConfigError, match=message):
        StackConfig(**settings)
