"""Layer IG (``layer-ig``): the meta-learner along the path equals the meta-learner on built vectors,
the attribution equals Captum's IntegratedGradients at the same layer from the same baseline, completes,
ranks the one word that drives a label first, says what it attributes to, and works from the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from emoscope.explain import ExplainModel, explain
from emoscope.models.meta import MetaLearner, gradient_ready
from emoscope.models.meta_path import path_logits
from emoscope.predict import Predictor

LABELS = ["anger", "fear", "joy", "sadness"]


@pytest.mark.parametrize("pooling,layers,n_base", [("attention", 1, 0), ("max", 2, 0), ("mean", 1, 2)])
def test_meta_learner_along_the_path_equals_the_meta_learner_on_built_vectors(pooling, layers, n_base):
    torch.manual_seed(0)
    meta = gradient_ready(MetaLearner([8, 6, 5], 4, 7, layers, 0.0, 0.0, pooling, 5, n_base=n_base))
    with torch.no_grad():
        for p in meta.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # away from the zero-initialised output of a base-reading meta
    x, b = torch.randn(3, 6, 19), torch.randn(3, 6, 19)
    n_words = torch.tensor([6, 3, 1])
    for row, n in enumerate(n_words):
        x[row, n:] = b[row, n:] = 0  # padding words are zero vectors, as pool_words gives them
    base = torch.randn(3, n_base * 4) if n_base else None
    s = torch.rand(3, 5, 6).requires_grad_(True)
    fast = path_logits(meta, x, b, s, n_words, base)
    built = (b[:, None] + s[..., None] * (x - b)[:, None]).flatten(0, 1)
    ref = meta(built, n_words.repeat_interleave(5), base=None if base is None else base.repeat_interleave(5, 0)).view(3, 5, -1)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    g_fast, = torch.autograd.grad(fast[..., 1].sum(), s)
    g_ref, = torch.autograd.grad(ref[..., 1].sum(), s)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-4)
    assert g_fast.abs().max() > 1e-3  # the comparison is not between two zeros


ONE_CUE = {"anger": "furious", "fear": "scared", "joy": "happy", "sadness": "حزين"}


def one_cue_rows(n: int, seed: int) -> list[dict[str, object]]:
    """Texts of filler words where each label is on exactly when its one cue word is in the text."""
    import random

    from conftest import FILLER

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        on = [label for label in LABELS if rng.random() < 0.4]
        words = rng.sample(FILLER, 5) + [ONE_CUE[label] for label in on]
        rng.shuffle(words)
        rows.append({"id": f"cue_{seed}_{i}", "text": " ".join(words), **{label: int(label in on) for label in LABELS}})
    return rows


def train_one_cue_stack(folder, tiny_encoder, tiny_encoder_b) -> ExplainModel:
    """A tiny stack (two frozen tiny encoders, naive stacking) trained on texts where one word
    alone decides each label; its dev file is ``folder / "dev.csv"``."""
    from conftest import tiny_stack_config, write_brighter_csv
    from emoscope.training import train_stack

    data = {"train": write_brighter_csv(folder / "train.csv", one_cue_rows(240, 1)),
            "dev": write_brighter_csv(folder / "dev.csv", one_cue_rows(60, 2))}
    config = tiny_stack_config([(tiny_encoder, False), (tiny_encoder_b, False)], data, folds=0)
    config = replace(config, meta=replace(config.meta, epochs=40, patience=40))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOSCOPE_CACHE_DIR", str(folder / "cache"))
        path = train_stack(config, folder / "s", progress=False, log=lambda _: None)
    return ExplainModel(Predictor(path))


@pytest.fixture(scope="module")
def stack_model(tiny_encoder, tiny_encoder_b, tmp_path_factory):
    return train_one_cue_stack(tmp_path_factory.mktemp("layer-ig-stack"), tiny_encoder, tiny_encoder_b)


def test_layer_ig_equals_captum_integrated_gradients_at_the_layer(stack_model):
    """Captum's IntegratedGradients over the meta-learner's input (each word's stacked vector, the
    base logits fixed) from the blank text's vectors: layer IG by definition."""
    from captum.attr import IntegratedGradients

    from emoscope.explain.layer_ig import layer_pass

    model = stack_model
    text = "so furious and scared today غاضب"
    exp = explain(model, text, "layer-ig", None, {"n_steps": 24})
    _, read, model_words = model.words(text)
    passed = layer_pass(model, [model_words])

    def forward(vectors):
        return torch.sigmoid(model.model.from_word_layer(passed.layer, vectors, torch.zeros(len(vectors), dtype=torch.long),
                                                         for_gradients=True))

    ig = IntegratedGradients(forward)
    for j, label in enumerate(LABELS):
        attr = ig.attribute(passed.layer.vectors, baselines=passed.baseline, target=j, n_steps=24)
        np.testing.assert_allclose(exp.scores(label)[read], attr.sum(-1)[0].detach().numpy(), atol=2e-5)


def test_the_blank_baseline_is_the_layer_of_a_text_of_padding_tokens(stack_model):
    """One padding token per word between the special and prefix tokens, read from input embeddings;
    the same for every text of that many words."""
    from emoscope.explain.layer_ig import blank_words, layer_pass

    model = stack_model
    a, b = layer_pass(model, [["so", "furious", "today"], ["we", "went", "home"]]).baseline
    torch.testing.assert_close(a, b)
    emotion = model.model
    batches = []
    for we in emotion.word_encoders:
        ids = we.tokenizer([[we.tokenizer.pad_token] * 3], is_split_into_words=True)["input_ids"][0]
        assert ids.count(we.pad_id) == 3  # [CLS] pad pad pad [SEP]
        batches.append(we.pad([(ids, [-1] + [0, 1, 2] + [-1])]))
    layer = emotion.word_layer(batches, torch.tensor([3]), inputs_embeds=model.input_embeddings(batches))
    torch.testing.assert_close(blank_words(model, [3])[3], layer.vectors[0].float())
    torch.testing.assert_close(a[:3], blank_words(model, [3, 5])[3])


def test_layer_ig_completes_and_says_what_it_attributes_to(stack_model):
    exp = explain(stack_model, "we were so scared and angry today", "layer-ig", None, {"n_steps": 128})
    d = exp.diagnostics
    assert "contextual word vectors, not input tokens" in d["attributes_to"] and "padding token" in d["baseline"]
    for label in LABELS:
        gap = d["attribution_sum"][label] - (exp.labels[label].probability - d["baseline_probability"][label])
        assert gap == pytest.approx(d["convergence_delta"][label], abs=1e-5)
        assert abs(d["convergence_delta"][label]) < 0.01
        assert exp.scores(label).sum() == pytest.approx(d["attribution_sum"][label], abs=1e-5)
    assert d["share_off_words"] == pytest.approx(0.0, abs=1e-6)  # a stack's layer has only words
    raw = exp.to_json()
    assert raw["method"] == "layer-ig" and "not input tokens" in raw["diagnostics"]["attributes_to"]


@pytest.mark.parametrize("label", LABELS)
def test_the_word_that_drives_a_label_is_ranked_first(stack_model, label):
    cue = ONE_CUE[label]
    text = f"اليوم the today {cue} ذهبنا and"
    with_cue, without = stack_model.predict_texts([text, "اليوم the today ذهبنا and"])[:, LABELS.index(label)]
    assert with_cue > 0.8 and without < 0.2  # the model really reads the cue
    exp = explain(stack_model, text, "layer-ig", [label])
    assert exp.labels[label].top(1, exp.words)[0][0] == cue


def test_all_labels_in_one_pass_equal_each_label_alone(stack_model):
    text = "happy and sad day"
    together = explain(stack_model, text, "layer-ig", None, {"n_steps": 8})
    for label in ("joy", "fear"):
        alone = explain(stack_model, text, "layer-ig", [label], {"n_steps": 8})
        np.testing.assert_allclose(alone.scores(label), together.scores(label), atol=1e-6)


def test_single_encoder_bundles_attribute_at_the_last_hidden_states(tiny_bundle):
    model = ExplainModel(Predictor(tiny_bundle))
    exp = explain(model, "we were so scared today", "layer-ig", None, {"n_steps": 8})
    d = exp.diagnostics
    assert "last hidden state" in d["attributes_to"]
    # the head is linear in the mean of the hidden states: only the sigmoid bends the path
    for label in LABELS:
        assert abs(d["convergence_delta"][label]) < 1e-3
    assert 0 < d["share_off_words"] < 1  # [CLS] and [SEP] carry part of it


def test_cli_explains_with_layer_ig(tiny_bundle, capsys):
    from emoscope.cli import main

    assert main(["explain", "--model", str(tiny_bundle), "--text", "so furious today", "--method", "layer-ig",
                 "--steps", "8", "--label", "anger"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["method"] == "layer-ig" and raw["params"] == {"n_steps": 8} and list(raw["labels"]) == ["anger"]
    assert "not input tokens" in raw["diagnostics"]["attributes_to"]
