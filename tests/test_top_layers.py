"""``encoder.train_layers``: only the top layers fine-tune, from the frozen layers' stored output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_stack_config

from emoscope.bundle import read_manifest, read_validation
from emoscope.config import EncoderConfig
from emoscope.errors import ConfigError
from emoscope.models import Runtime
from emoscope.predict import Predictor
from emoscope.training import train, train_stack
from emoscope.training.classifier import build_classifier
from emoscope.training.stack.embeddings import EmbeddingCache, embed_words
from emoscope.training.top_layers import LowerLayerStates, freeze_below_top, layer_stack

TEXTS = ["we felt so furious today", "happy", "the day was sad and we went home crying", "خائف اليوم في البيت"]


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _classifier(tiny_encoder, tiny_data, n_top: int):
    config = tiny_config(tiny_encoder, tiny_data)
    enc = dataclasses.replace(config.encoder, train_layers=n_top)
    model = build_classifier(config.replace(encoders=(enc,)), enc, ["anger", "fear", "joy", "sadness"],
                             torch.device("cpu"), lambda _: None)
    model.place(Runtime(torch.device("cpu"), None, 16))
    return model


def test_only_the_top_layers_and_the_head_train(tiny_encoder, tiny_data):
    model = _classifier(tiny_encoder, tiny_data, 1)
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trains and all(n.startswith(("encoder.encoder.layer.1.", "head.")) for n in trains)
    assert any(n.startswith("head.") for n in trains) and any(n.startswith("encoder.encoder.layer.1.") for n in trains)
    name, layers = layer_stack(model.encoder)
    assert name == "encoder.layer" and len(layers) == 2
    with pytest.raises(ConfigError, match="has 2 layers"):
        freeze_below_top(model.encoder, 3)


def test_the_stored_states_give_the_full_forward_and_skip_the_frozen_layers(tiny_encoder, tiny_data, tmp_path):
    model = _classifier(tiny_encoder, tiny_data, 1).eval()
    encoded = model.word_encoder.encode_texts(TEXTS)
    cache = EmbeddingCache(tmp_path / "cache")
    states = LowerLayerStates(model.encoder, model.word_encoder, torch.device("cpu"), 1, encoded, cache)
    assert states.cached == 0
    calls = []
    _, layers = layer_stack(model.encoder)
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in layers[0].modules() if m is not layers[0]]
    batch = model.word_encoder.pad(encoded)
    with torch.inference_mode():
        full = model.logits(batch)
        n_full = len(calls)
        with states.reading(list(range(len(TEXTS)))):
            through = model.logits(batch)
    assert n_full > 0 and len(calls) == n_full  # the frozen layer did not run again
    torch.testing.assert_close(through, full, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(states.probs(model, 2), torch.sigmoid(full).numpy(), atol=1e-5)
    for h in handles:
        h.remove()
    with torch.inference_mode():  # and the layer is whole again afterwards
        torch.testing.assert_close(model.logits(batch), full)
    again = LowerLayerStates(model.encoder, model.word_encoder, torch.device("cpu"), 1, encoded, cache)
    assert again.cached == len(TEXTS)


def test_a_classifier_fine_tunes_its_top_layer_and_predicts_as_validated(tiny_encoder, tiny_data, tmp_path, own_cache):
    config = tiny_config(tiny_encoder, tiny_data, epochs=3, patience=3)
    config = config.replace(encoders=(dataclasses.replace(config.encoder, train_layers=1),))
    logs: list[str] = []
    path = train(config, tmp_path / "top", progress=False, log=logs.append)
    assert any("only the top 1 layer(s) train" in line for line in logs)
    first = next(line for line in logs if "frozen layers' output" in line)
    assert "texts: 0 from the cache" in first
    n = int(first.split("output of ")[1].split()[0])
    before = build_classifier(config, config.encoder, ["anger", "fear", "joy", "sadness"], torch.device("cpu"),
                              lambda _: None).encoder.state_dict()
    after = Predictor(path).model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("encoder.layer.1."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder.layer.1."))
    validation = read_validation(path, read_manifest(path))
    np.testing.assert_allclose(Predictor(path).predict_proba(validation.texts), validation.probs, atol=2e-5)
    logs.clear()
    train(config, tmp_path / "again", progress=False, log=logs.append)  # the frozen layers' output is reused
    assert any(f"of {n} texts: {n} from the cache" in line for line in logs)


def test_a_stack_fine_tunes_top_layers_in_every_fold(tiny_encoder, tiny_data, tmp_path, own_cache):
    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder, False)], tiny_data, folds=2, epochs=2)
    encoders = (dataclasses.replace(config.encoders[0], train_layers=1), config.encoders[1])
    logs: list[str] = []
    path = train_stack(config.replace(encoders=encoders), tmp_path / "stack", progress=False, log=logs.append)
    lines = [line for line in logs if "frozen layers' output" in line]
    assert len(lines) == 3 and "texts: 0 from the cache" in lines[0]  # the folds' and the full model's fits
    assert all("texts: 0 from the cache" not in line for line in lines[1:])  # share the stored states
    validation = read_validation(path, read_manifest(path))
    np.testing.assert_allclose(Predictor(path).predict_proba(validation.texts), validation.probs, atol=2e-5)


@pytest.mark.parametrize("options, message", [
    ({"train_layers": -1}, "whole number"),
    ({"train_layers": 2, "fine_tune": False}, "needs fine_tune = true"),
])
def test_bad_train_layers_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        EncoderConfig(source="minilm-l6", **options)


def test_stage_two_reads_a_top_layer_model_from_the_stored_states(tiny_encoder, tiny_data, tmp_path):
    model = _classifier(tiny_encoder, tiny_data, 1).eval()
    words = [text.split() for text in TEXTS]
    device, cache = torch.device("cpu"), EmbeddingCache(tmp_path / "cache")
    full, full_logits = embed_words(model.encoder, model.word_encoder, words, 2, device, head=(model.head, "mean"))
    calls = []
    _, layers = layer_stack(model.encoder)
    handle = layers[0].attention.register_forward_hook(lambda *_: calls.append(1))

    def stored_states(encoded):
        states = LowerLayerStates(model.encoder, model.word_encoder, device, 1, encoded, cache)
        calls.clear()  # storing the states runs the frozen layer once; reading must not
        return states

    stored, stored_logits = embed_words(model.encoder, model.word_encoder, words, 2, device,
                                        head=(model.head, "mean"), stored_states=stored_states)
    handle.remove()
    assert calls == []
    np.testing.assert_allclose(stored.flat, full.flat, atol=1e-5)
    np.testing.assert_array_equal(stored.offsets, full.offsets)
    np.testing.assert_allclose(stored_logits.flat, full_logits.flat, atol=1e-5)
