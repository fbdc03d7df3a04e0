"""Explanations on tiny models whose attributions are known by construction, IG completeness,
Captum agreement, faithfulness, HTML safety and bidi, caching, and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from emoscope.errors import InputError
from emoscope.explain import (
    Explanation,
    ExplainModel,
    explain,
    explain_cached,
    faithfulness,
    random_scores,
    render_html,
)
from emoscope.predict import Predictor

CUE = "furious"
LABELS = ["anger", "fear", "joy", "sadness"]


def build_cue_bundle(folder: Path, tiny_encoder: Path) -> Path:
    """A one-layer BERT classifier built by hand so that the word "furious" alone drives "anger".

    Every embedding is zero except the cue word's, so only the cue differs from the padding
    baseline; the attention query is a constant aimed at the cue's key, so every token attends
    to the cue; the head reads the cue's direction for "anger" only. LIME, attention and IG must
    all rank the cue first for "anger".
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    from emoscope import bundle as bundle_io
    from emoscope.manifest import EncoderEntry, Manifest, ModelSpec
    from emoscope.models import EncoderClassifier
    from emoscope.text import NormalizerConfig
    from emoscope.words import WordEncoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    cue_ids = tokenizer(CUE, add_special_tokens=False)["input_ids"]
    assert len(cue_ids) == 1, "the cue must be one token of the tiny vocabulary"
    hidden = 8
    # layer_norm_eps = 1 keeps LayerNorm smooth in the scale of its input: with the usual 1e-12 it
    # maps every multiple of the cue vector to the same output, and no gradient method could see it.
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=4, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                        layer_norm_eps=1.0)
    encoder = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():
        for p in encoder.parameters():
            p.zero_()
        for name, p in encoder.named_parameters():
            if "LayerNorm.weight" in name:
                p.fill_(1.0)
        encoder.embeddings.word_embeddings.weight[cue_ids[0], 0] = 5.0
        attention = encoder.encoder.layer[0].attention
        attention.self.query.bias[0] = 1.0
        attention.self.key.weight[0, 0] = 10.0
        attention.self.value.weight.copy_(torch.eye(hidden))
        attention.output.dense.weight.copy_(torch.eye(hidden))
    model = EncoderClassifier(encoder, WordEncoder(tokenizer, NormalizerConfig(), 32), n_labels=len(LABELS),
                              pooling="mean", dropout=0.0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-2.0)
        model.head.weight[0, 0] = 3.0
    manifest = Manifest(
        name="cue", labels=LABELS, languages=["en"], thresholds=[0.5] * len(LABELS),
        model=ModelSpec(kind="encoder-classifier", path="model", pooling="mean", max_length=32, n_labels=len(LABELS),
                        encoders=[EncoderEntry(source="cue-bert", text_prefix="", model_type="bert", hidden_size=hidden)]),
        text=NormalizerConfig().to_dict(),
    )
    return bundle_io.save_bundle(folder, manifest, model.save)


@pytest.fixture(scope="module")
def cue_model(tiny_encoder, tmp_path_factory):
    return ExplainModel(Predictor(build_cue_bundle(tmp_path_factory.mktemp("cue") / "cue", tiny_encoder)))


@pytest.fixture(scope="module")
def tiny_model(tiny_bundle):
    return ExplainModel(Predictor(tiny_bundle))


TEXT = "the day was furious and we went home"


def test_cue_model_really_is_driven_by_the_cue(cue_model):
    with_cue, without = cue_model.predict_texts([TEXT, "the day was calm and we went home"])
    assert with_cue[0] > 0.9 and without[0] < 0.2
    np.testing.assert_allclose(with_cue[1:], without[1:], atol=1e-6)  # other labels ignore everything


@pytest.mark.parametrize("method,params", [("lime", {"samples": 200, "seed": 1}), ("attention", {}),
                                           ("attention", {"rollout": True}), ("attention", {"layer": 0, "head": 0}),
                                           ("ig", {"n_steps": 20})])
def test_every_method_ranks_the_cue_word_first(cue_model, method, params):
    exp = explain(cue_model, TEXT, method, ["anger"], params)
    assert exp.labels["anger"].top(1, exp.words)[0][0] == CUE
    cue = next(w for w in exp.words if w.text == CUE)
    assert TEXT[cue.start:cue.end] == CUE
    assert exp.labels["anger"].probability > 0.9 and exp.method == method and exp.runtime_s > 0


def test_ig_gives_the_cue_everything_and_other_words_nothing(cue_model):
    exp = explain(cue_model, TEXT, "ig", None, {"n_steps": 50, "precision": "fp32"})
    scores = exp.scores("anger")
    cue = [w.text for w in exp.words].index(CUE)
    assert scores[cue] > 0.5
    assert np.abs(np.delete(scores, cue)).max() < 1e-6
    for label in ("fear", "joy", "sadness"):  # labels the model does not compute from text
        assert np.abs(exp.scores(label)).max() < 1e-6


def test_ig_completeness_within_the_reported_delta(tiny_model):
    exp = explain(tiny_model, "we were so scared and angry today", "ig", None, {"n_steps": 50, "precision": "fp32"})
    for label in LABELS:
        d = exp.diagnostics
        gap = d["attribution_sum"][label] - (exp.labels[label].probability - d["baseline_probability"][label])
        assert gap == pytest.approx(d["convergence_delta"][label], abs=1e-5)
        assert abs(d["convergence_delta"][label]) < 0.01
        assert exp.scores(label).sum() == pytest.approx(d["attribution_sum"][label], abs=1e-5)


@pytest.mark.parametrize("method,params", [("ig", {"n_steps": 30}), ("lime", {"samples": 300, "seed": 2})])
def test_bf16_explanations_agree_with_fp32_and_leave_predictions_exact(tiny_model, method, params):
    """bf16 (the default on AMX CPUs and bf16 GPUs) is a speed option: it must rank words as
    fp32 does, report what it used, and leave the fp32 predictions of the same process untouched."""
    text = "we were so scared and angry today"
    before = tiny_model.predict_texts([text, "happy and sad day"])
    fp32 = explain(tiny_model, text, method, None, {**params, "precision": "fp32"})
    bf16 = explain(tiny_model, text, method, None, {**params, "precision": "bf16"})
    assert fp32.diagnostics["precision"] == "fp32" and bf16.diagnostics["precision"] == "bf16"
    for label in LABELS:
        a, b = fp32.scores(label), bf16.scores(label)
        assert np.corrcoef(a, b)[0, 1] > 0.95, (label, a, b)
        assert fp32.labels[label].probability == bf16.labels[label].probability  # reported in fp32
    if method == "ig":
        assert max(abs(d) for d in bf16.diagnostics["convergence_delta"].values()) < 0.02
    np.testing.assert_array_equal(tiny_model.predict_texts([text, "happy and sad day"]), before)


def test_precision_is_checked(tiny_model):
    with pytest.raises(InputError, match="precision must be one of auto, bf16, fp32"):
        explain(tiny_model, TEXT, "ig", ["anger"], {"precision": "fp16"})


def test_ig_matches_captum_label_by_label(tiny_model):
    from captum.attr import IntegratedGradients

    text = "happy and sad day"
    exp = explain(tiny_model, text, "ig", ["joy", "sadness"], {"n_steps": 30, "internal_batch_size": 7, "precision": "fp32"})
    _, read, model_words = tiny_model.words(text)
    batches = tiny_model.batches(model_words)
    inputs, bases = tiny_model.input_embeddings(batches), tiny_model.baselines(batches)

    def forward(x):
        return tiny_model.forward_embeds([x], batches, len(model_words))

    ig = IntegratedGradients(forward)
    for label in ("joy", "sadness"):
        attr = ig.attribute(inputs[0], baselines=bases[0], target=LABELS.index(label), n_steps=30)
        per_token = attr.sum(-1)[0].detach()
        words = [per_token[batches[0]["word_index"][0] == i].sum().item() for i in range(len(model_words))]
        np.testing.assert_allclose(exp.scores(label)[read], words, atol=1e-5)


def test_all_labels_come_from_one_lime_sample_set_and_the_seed_repeats(tiny_model):
    a = explain(tiny_model, TEXT, "lime", None, {"samples": 100, "seed": 3})
    b = explain(tiny_model, TEXT, "lime", None, {"samples": 100, "seed": 3})
    c = explain(tiny_model, TEXT, "lime", None, {"samples": 100, "seed": 4})
    assert a.diagnostics["model_calls"] == 100  # one sample set scored once for every label
    for label in LABELS:
        np.testing.assert_allclose(a.scores(label), b.scores(label))
    assert any(not np.allclose(a.scores(lab), c.scores(lab)) for lab in LABELS)


def test_lime_keeps_diacritised_arabic_and_emoji_as_words(tiny_model):
    text = "كَانَ اليومُ غاضب 😡 جداً"
    exp = explain(tiny_model, text, "lime", ["anger"], {"samples": 50})
    assert [w.text for w in exp.words] == ["كَانَ", "اليومُ", "غاضب", "😡", "جداً"]
    assert len(exp.scores("anger")) == 5


def test_faithfulness_beats_random_on_the_cue_model(cue_model):
    exp = explain(cue_model, TEXT, "ig", ["anger"])
    real = faithfulness(cue_model, exp)["anger"]
    control = faithfulness(cue_model, exp, scores=random_scores(exp, seed=0))["anger"]
    assert real["comprehensiveness"] > 0.5  # removing the cue kills "anger"
    assert real["sufficiency"] < 0.05  # the cue alone keeps it
    assert real["comprehensiveness"] >= control["comprehensiveness"]
    assert real["sufficiency"] <= control["sufficiency"]


def test_explanation_round_trips_through_json(tiny_model):
    exp = explain(tiny_model, TEXT, "attention", ["joy"])
    raw = json.loads(json.dumps(exp.to_json()))
    again = Explanation.from_json(raw)
    assert again.words == exp.words and again.scores("joy").tolist() == exp.scores("joy").tolist()
    assert raw["labels"]["joy"]["top"][0][0] in TEXT


@pytest.mark.parametrize("text", [
    '<script>alert("x")</script> so furious',
    '"><img src=x onerror=alert(1)> angry',
    "أنا غاضب جداً from the news 2024 😡 اليوم",
])
def test_rendered_html_escapes_user_text_and_isolates_each_word(tiny_model, text):
    page = render_html(explain(tiny_model, text, "attention", ["anger"]), "anger")
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert 'dir="auto"' in page and "unicode-bidi: isolate" in page
    spans = re.findall(r'<span class="es-word"[^>]*>(.*?)</span>', page)
    import html as html_mod

    words = [html_mod.unescape(s) for s in spans]
    assert "".join(words) == "".join(text.split())  # every character, in the typed order
    if "غاضب" in text:
        assert words.index("from") < words.index("news") < words.index("2024")
        assert 'class="es-text" dir="rtl"' in page
    else:
        assert 'class="es-text" dir="ltr"' in page


def test_bad_input_gets_clear_errors(tiny_model):
    with pytest.raises(InputError, match="empty"):
        explain(tiny_model, "   ", "ig")
    with pytest.raises(InputError, match="unknown explanation method 'shap'"):
        explain(tiny_model, TEXT, "shap")
    with pytest.raises(InputError, match="unknown label"):
        explain(tiny_model, TEXT, "ig", ["love"])
    with pytest.raises(InputError, match="takes no parameter"):
        explain(tiny_model, TEXT, "ig", None, {"samples": 10})
    with pytest.raises(InputError, match="layer must be"):
        explain(tiny_model, TEXT, "attention", None, {"layer": 9})


def test_long_text_is_explained_without_running_out_of_memory(tiny_model):
    text = " ".join(["the furious day"] * 200)  # 600 words; the encoder reads 32 tokens
    exp = explain(tiny_model, text, "ig", ["anger"], {"n_steps": 8, "internal_batch_size": 4})
    assert len(exp.words) == 600
    assert np.count_nonzero(exp.scores("anger")) <= 32  # words past max_length are not read


def test_cache_computes_once(tiny_model):
    a = explain_cached(tiny_model, TEXT, "lime", ["joy"], {"samples": 60})
    b = explain_cached(tiny_model, TEXT, "lime", ["joy"], {"samples": 60})
    c = explain_cached(tiny_model, TEXT, "lime", ["joy"], {"samples": 61})
    assert a is b and a is not c


def test_stacked_bundle_is_explained_by_every_method(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path, monkeypatch):
    from dataclasses import replace

    from conftest import tiny_stack_config
    from emoscope.training import train_stack

    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    config = tiny_stack_config([(tiny_encoder, False), (tiny_encoder_b, False)], tiny_data, folds=0)
    path = train_stack(replace(config, meta=replace(config.meta, epochs=5)), tmp_path / "s", progress=False,
                       log=lambda _: None)
    model = ExplainModel(Predictor(path))
    text = "so furious today غاضب"
    ig = explain(model, text, "ig", None, {"n_steps": 40})
    for label in LABELS:
        assert abs(ig.diagnostics["convergence_delta"][label]) < 0.01
    att = explain(model, text, "attention")
    assert set(att.extra["attention"]) == {"tiny0", "tiny1"}  # no encoder was fine-tuned: all of them
    assert np.isclose(att.scores("anger").sum(), 1.0)
    one = explain(model, text, "attention", None, {"encoder": "tiny1"})
    assert set(one.extra["attention"]) == {"tiny1"}
    np.testing.assert_allclose(one.scores("anger"), att.diagnostics["per_encoder"]["tiny1"], atol=1e-6)
    lime = explain(model, text, "lime", ["anger"], {"samples": 60})
    assert len(lime.scores("anger")) == 4


def test_cli_explains_as_json_and_html_and_evaluates(tiny_bundle, tiny_data, tmp_path, capsys):
    from emoscope.cli import main

    assert main(["explain", "--model", str(tiny_bundle), "--text", "so furious <script>x</script>", "--method", "ig",
                 "--label", "anger", "--steps", "10"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert list(raw["labels"]) == ["anger"] and "faithfulness" in raw and raw["params"]["n_steps"] == 10
    out = tmp_path / "e.html"
    assert main(["explain", "--model", str(tiny_bundle), "--text", "so furious <script>x</script>", "--method",
                 "attention", "--format", "html", "--output", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.count('class="emoscope-explanation"') == 4 and "<script>" not in page
    assert main(["explain", "--model", str(tiny_bundle), "--evaluate", "--data", str(tiny_data["dev"]), "--n", "3",
                 "--methods", "attention,ig", "--steps", "8", "--quiet", "--output", str(tmp_path / "f.json")]) == 0
    table = capsys.readouterr().out
    assert "| random |" in table and "| ig |" in table
    result = json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))["results"]
    paired = result["ig"]["comprehensiveness_vs_random"]
    assert paired["ci95_low"] <= paired["mean"] <= paired["ci95_high"] and 0 <= paired["win_rate"] <= 1
    assert "comprehensiveness_vs_random" not in result["random"]
    assert main(["explain", "--model", str(tiny_bundle), "--text", " "]) == 2
    assert "empty" in capsys.readouterr().err


def test_paired_summary_by_hand():
    from emoscope.explain import paired_summary

    s = paired_summary(np.array([0.1, 0.3, -0.1, 0.5]))
    assert s["mean"] == pytest.approx(0.2) and s["win_rate"] == pytest.approx(0.75)
    assert -0.1 <= s["ci95_low"] < 0.2 < s["ci95_high"] <= 0.5
    assert paired_summary(np.array([]))["mean"] is None


@pytest.mark.parametrize("method,params", [("lime", {"samples": 300, "batch_size": 16}), ("ig", {"n_steps": 12, "internal_batch_size": 4})])
def test_long_explanations_report_progress(tiny_model, method, params):
    seen: list[float] = []
    explain(tiny_model, "we were so scared and angry today", method, ["anger", "joy"], params, on_progress=seen.append)
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] == 1.0 and 0 <= seen[0] < 1


def test_attention_encoder_choice(tiny_model):
    """A single-encoder bundle's one encoder is its fine-tuned one; an unknown name is refused."""
    default = explain(tiny_model, TEXT, "attention", ["anger"])
    assert list(default.diagnostics["per_encoder"]) == tiny_model.names
    np.testing.assert_allclose(explain(tiny_model, TEXT, "attention", ["anger"], {"encoder": "all"}).scores("anger"),
                               default.scores("anger"))
    with pytest.raises(InputError, match="unknown encoder 'nope'"):
        explain(tiny_model, TEXT, "attention", ["anger"], {"encoder": "nope"})


# --- declared parameters -------------------------------------------------------------------------


def test_defaults_come_from_the_declared_specs():
    from emoscope.explain import METHODS, resolve_params

    assert list(METHODS) == ["ig", "lime", "attention", "layer-ig"]  # the Explain page's order
    for name, info in METHODS.items():
        resolved = resolve_params(name, None)
        assert resolved == {s.name: s.default for s in info.params} and list(resolved) == [s.name for s in info.params]
        assert all(s.help for s in info.params), name
    assert resolve_params("lime", {"samples": 300}) == {"samples": 300, "seed": 0, "batch_size": 64, "top_k": 10,
                                                        "precision": "auto"}
    assert resolve_params("attention", None) == {"layer": -1, "head": "mean", "rollout": False, "encoder": "fine-tuned"}
    assert resolve_params("ig", None) == {"n_steps": 50, "internal_batch_size": 16, "precision": "auto"}


@pytest.mark.parametrize("method,params,message", [
    ("lime", {"samples": 5}, "lime: samples must be at least 10, got 5"),
    ("lime", {"seed": -1}, "lime: seed must be in 0..4294967295, got -1"),
    ("lime", {"seed": "abc"}, "lime: seed must be an integer, got 'abc'"),
    ("lime", {"batch_size": 0}, "lime: batch_size must be at least 1, got 0"),
    ("lime", {"samples": True}, "lime: samples must be an integer, got True"),
    ("lime", {"samples": 12.5}, "lime: samples must be an integer, got 12.5"),
    ("ig", {"n_steps": 1}, "ig: n_steps must be at least 2, got 1"),
    ("ig", {"internal_batch_size": 0}, "ig: internal_batch_size must be at least 1, got 0"),
    ("ig", {"precision": "fp16"}, "ig: unknown precision 'fp16': precision must be one of auto, bf16, fp32"),
    ("attention", {"head": "first"}, "attention: head must be an integer or 'mean', got 'first'"),
    ("attention", {"head": -1}, "attention: head must be at least 0, got -1"),
    ("attention", {"layer": -2}, "attention: layer must be at least -1, got -2"),
    ("attention", {"rollout": "maybe"}, "attention: rollout must be true or false, got 'maybe'"),
    ("attention", {"encoder": 3}, "attention: encoder must be a string, got 3"),
])
def test_range_and_type_errors_name_the_method_and_parameter(method, params, message):
    from emoscope.explain import resolve_params

    with pytest.raises(InputError, match=re.escape(message)):
        resolve_params(method, params)


def test_values_are_coerced_as_the_methods_read_them():
    from emoscope.explain import parse_param, resolve_params

    assert resolve_params("attention", {"head": "3", "layer": "0", "rollout": "true"}) == {
        "layer": 0, "head": 3, "rollout": True, "encoder": "fine-tuned"}
    assert resolve_params("lime", {"samples": 500.0, "seed": np.int64(4)})["samples"] == 500
    assert type(resolve_params("lime", {"seed": np.int64(4)})["seed"]) is int
    assert resolve_params("attention", {"rollout": 1, "head": "mean"})["rollout"] is True
    assert parse_param("attention", "head", "mean") == "mean" and parse_param("attention", "head", "2") == 2
    params = {"n_steps": 8}
    assert resolve_params("ig", resolve_params("ig", params)) == resolve_params("ig", params)  # idempotent


def test_model_dependent_bounds_and_choices_are_checked_with_the_model(tiny_model):
    from emoscope.explain import resolve_params

    assert resolve_params("attention", {"layer": 9})["layer"] == 9  # no model: its layer count is unknown
    last = max(tiny_model.layers) - 1
    with pytest.raises(InputError, match=re.escape(f"attention: layer must be in -1..{last}, got 9")):
        resolve_params("attention", {"layer": 9}, tiny_model)
    with pytest.raises(InputError, match="unknown encoder 'nope'.*fine-tuned, all, " + tiny_model.names[0]):
        resolve_params("attention", {"encoder": "nope"}, tiny_model)
    assert resolve_params("attention", {"encoder": tiny_model.names[0]}, tiny_model)["encoder"] == tiny_model.names[0]


def test_register_method_checks_its_specs():
    from emoscope.explain import ParamSpec, register_method

    with pytest.raises(ValueError, match="repeat"):
        register_method("twice", ParamSpec("a", int, 1, "a"), ParamSpec("a", int, 2, "a"))
    with pytest.raises(ValueError, match="default of a"):
        register_method("bad-default", ParamSpec("a", int, 1.5, "a"))
    with pytest.raises(ValueError, match="page_order names no parameter b"):
        register_method("bad-order", ParamSpec("a", int, 1, "a"), page_order=("b",))
    with pytest.raises(TypeError, match="type must be one of"):
        ParamSpec("a", list, [], "a")


# --- the Explain page's widgets come from the specs ----------------------------------------------


class RecordingUI:
    """A stand-in for a Streamlit container: records each widget call, returns its start value."""

    def __init__(self, answers: dict[str, object] | None = None):
        self.calls: list[tuple[str, str, dict]] = []
        self.answers = answers or {}

    def __getattr__(self, widget: str):
        def draw(label, *args, **kwargs):
            self.calls.append((widget, label, {"args": args, **kwargs}))
            if kwargs["key"] in self.answers:
                return self.answers[kwargs["key"]]
            if "index" in kwargs:
                return (args[0] if args else kwargs["options"])[kwargs["index"]]
            return kwargs["value"]
        return draw

    def by_key(self, key: str) -> tuple[str, str, dict]:
        return next(c for c in self.calls if c[2]["key"] == key)


@pytest.fixture
def every_kind_of_parameter():
    """A throwaway method with one parameter of each type and widget, unregistered afterwards."""
    from emoscope.explain import METHODS, ParamSpec, Widget, register_method

    specs = (
        ParamSpec("count", int, 3, "an int in a range", min=1, max=9, widget=Widget("Count")),
        ParamSpec("steps", int, 20, "an int on presets", min=2, widget=Widget("Steps", value=10, presets=(5, 10, 20))),
        ParamSpec("ratio", float, 0.5, "a float", min=0.0, max=1.0),
        ParamSpec("flag", bool, False, "a bool", widget=Widget("Flag")),
        ParamSpec("pick", str, "b", "a choice from the model", choices=lambda m: ["a", "b", *m.names],
                  widget=Widget("Pick")),
        ParamSpec("mode", str, "x", "a radio choice", choices=("x", "y", "z"), widget=Widget(offered=("x", "y"), radio=True)),
        ParamSpec("note", str, "hi", "a string"),
        ParamSpec("head", int, "mean", "a number or a word", min=0, words=("mean",), widget=Widget(only_if={"flag": False})),
        ParamSpec("hidden", int, 64, "not on the page", min=1, widget=None),
    )
    register_method("throwaway", *specs, title="Throwaway", page_order=("flag",))(
        lambda model, text, indices, params: (np.zeros((len(indices), len(text.split()))), {"params": params}, {}))
    yield METHODS["throwaway"]
    METHODS.pop("throwaway")


def test_widget_builder_draws_each_spec_as_its_widget(every_kind_of_parameter, tiny_model):
    from emoscope.app.explain_widgets import param_widgets

    ui = RecordingUI()
    values = param_widgets(every_kind_of_parameter, tiny_model, ui)
    assert [(w, label) for w, label, _ in ui.calls] == [
        ("checkbox", "Flag"), ("number_input", "Count"), ("select_slider", "Steps"), ("number_input", "ratio"),
        ("selectbox", "Pick"), ("radio", "mode"), ("text_input", "note"), ("text_input", "head")]
    count = ui.by_key("explain_throwaway_count")[2]
    assert (count["min_value"], count["max_value"], count["value"], count["step"]) == (1, 9, 3, 1)
    assert count["help"] == "an int in a range"
    ratio = ui.by_key("explain_throwaway_ratio")[2]
    assert (ratio["min_value"], ratio["max_value"], ratio["value"]) == (0.0, 1.0, 0.5)
    assert ui.by_key("explain_throwaway_steps")[2]["options"] == [5, 10, 20]
    assert ui.by_key("explain_throwaway_pick")[2]["args"][0] == ["a", "b", *tiny_model.names]
    mode = ui.by_key("explain_throwaway_mode")[2]
    assert mode["args"][0] == ["x", "y"] and mode["horizontal"]
    assert values == {"flag": False, "count": 3, "steps": 10, "ratio": 0.5, "pick": "b", "mode": "x", "note": "hi",
                      "head": "mean"}  # "hidden" has no widget: its default applies


def test_widget_builder_hides_what_only_if_rules_out_and_values_resolve(every_kind_of_parameter, tiny_model):
    from emoscope.app.explain_widgets import param_widgets
    from emoscope.explain import resolve_params

    ui = RecordingUI({"explain_throwaway_flag": True})
    values = param_widgets(every_kind_of_parameter, tiny_model, ui)
    assert "head" not in values and all(c[2]["key"] != "explain_throwaway_head" for c in ui.calls)
    assert resolve_params("throwaway", values, tiny_model)["head"] == "mean"
    typed = param_widgets(every_kind_of_parameter, tiny_model, RecordingUI({"explain_throwaway_head": "2"}))
    assert resolve_params("throwaway", typed, tiny_model)["head"] == 2


def test_shipped_methods_draw_what_the_page_showed(tiny_model):
    """The page's widgets for lime, ig and attention, as the hand-written page had them."""
    from emoscope.app.explain_widgets import param_widgets
    from emoscope.explain import METHODS

    shown = {}
    for name, info in METHODS.items():
        ui = RecordingUI()
        param_widgets(info, tiny_model, ui)
        shown[name] = [(w, label) for w, label, _ in ui.calls]
    assert shown["lime"] == [("select_slider", "Samples"), ("number_input", "Seed"), ("radio", "Precision")]
    assert shown["ig"] == [("select_slider", "Steps"), ("radio", "Precision")]
    assert shown["attention"] == [("selectbox", "Encoder"), ("checkbox", "Attention rollout (all layers)"),
                                  ("number_input", "Layer (-1 = last)"), ("text_input", "Head (number, or 'mean')")]
    ui = RecordingUI()
    param_widgets(METHODS["attention"], tiny_model, ui)
    assert ui.by_key("explain_attention_encoder")[2]["args"][0] == ["all"]  # one encoder: nothing to choose
    layer = ui.by_key("explain_attention_layer")[2]
    assert (layer["min_value"], layer["max_value"], layer["value"]) == (-1, tiny_model.layers[0] - 1, -1)


def test_explain_page_builds_a_registered_methods_widgets(every_kind_of_parameter, tiny_bundle, tmp_path, monkeypatch):
    """The real page, in Streamlit: a newly registered method is offered with its widgets, and
    the values chosen reach the method resolved."""
    import shutil

    from streamlit.testing.v1 import AppTest

    shutil.copytree(tiny_bundle, tmp_path / "tiny")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120).run()
    at.switch_page("pages/explain.py").run()
    at.text_area(key="explain_text").input("so furious today").run()
    at.radio(key="explain_method").set_value("Throwaway").run()
    assert at.number_input(key="explain_throwaway_count").value == 3
    assert at.select_slider(key="explain_throwaway_steps").value == 10
    at.number_input(key="explain_throwaway_count").set_value(7)
    at.text_input(key="explain_throwaway_head").input("1")
    at.button[0].click().run()
    assert not at.exception and not at.error
    caption = " ".join(c.value for c in at.caption)
    assert '"count": 7' in caption and '"head": 1' in caption and '"hidden": 64' in caption
    at.text_input(key="explain_throwaway_head").input("first").run()
    at.button[0].click().run()
    assert "head must be an integer or 'mean'" in at.error[0].value
