"""Progressive LIME and Integrated Gradients: estimates as samples or steps arrive, the same
final result as a run that never streams, and Stop keeping what was computed (issue 15, item 2)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from emoscope.explain import Explanation, ExplainModel, explain, explain_cached, explain_progressive
from emoscope.predict import Predictor

TEXT = "we were so scared and angry today, then happy again at home with friends"
CASES = [("lime", {"samples": 300, "batch_size": 16, "seed": 4}),
         ("ig", {"n_steps": 12, "internal_batch_size": 4, "precision": "fp32"})]


@pytest.fixture(scope="module")
def tiny_model(tiny_bundle):
    return ExplainModel(Predictor(tiny_bundle))


def finished(exp: Explanation) -> str:
    raw = exp.to_json()
    raw.pop("runtime_s")
    return json.dumps(raw, sort_keys=True)


@pytest.mark.parametrize("method,params", CASES)
def test_streamed_run_ends_on_the_batch_result_bit_for_bit(tiny_model, method, params):
    batch = explain(tiny_model, TEXT, method, None, params)
    streamed = list(explain_progressive(tiny_model, TEXT, method, None, params))
    partials: list[Explanation] = []
    called = explain(tiny_model, TEXT, method, None, params, on_partial=partials.append)
    assert len(streamed) >= 3 and all(e.partial for e in streamed[:-1]) and not streamed[-1].partial
    assert len(partials) == len(streamed) - 1
    assert finished(streamed[-1]) == finished(batch) == finished(called)
    assert "partial" not in batch.to_json() and "progress" not in batch.to_json()
    # the estimates really are estimates: they differ from the final result, and the last is closest
    final = np.concatenate([batch.scores(label) for label in batch.labels])
    gaps = [np.abs(np.concatenate([e.scores(label) for label in batch.labels]) - final).max() for e in streamed[:-1]]
    assert gaps[0] > 0 and gaps[-1] <= gaps[0]


@pytest.mark.parametrize("method,params", CASES)
def test_first_estimate_arrives_before_the_work_is_done(tiny_model, method, params):
    events: list[tuple[str, float]] = []
    explain(tiny_model, TEXT, method, ["anger", "joy"], params, on_progress=lambda f: events.append(("progress", f)),
            on_partial=lambda e: events.append(("partial", e.progress["done"] / e.progress["total"])))
    first = next(i for i, (kind, _) in enumerate(events) if kind == "partial")
    assert events[first][1] < 0.25  # a first look from a small share of the samples or steps
    assert any(kind == "progress" and f < 0.5 for kind, f in events[first:])  # most of the work comes after it
    assert events[-1] == ("progress", 1.0)


@pytest.mark.parametrize("method,params", CASES)
def test_stop_keeps_the_estimate_marked_partial(tiny_model, method, params):
    stop = threading.Event()
    seen: list[Explanation] = []

    def on_partial(exp: Explanation) -> None:
        seen.append(exp)
        if len(seen) == 2:
            stop.set()

    exp = explain(tiny_model, TEXT, method, None, params, on_partial=on_partial, stop=stop)
    unit, total = ("samples", params["samples"]) if method == "lime" else ("steps", params["n_steps"])
    assert exp.partial and exp.progress["unit"] == unit and exp.progress["total"] == total
    assert exp.progress["done"] < total
    raw = exp.to_json()
    assert raw["partial"] is True and raw["progress"] == exp.progress
    back = Explanation.from_json(json.loads(json.dumps(raw)))
    assert back.partial and back.progress == exp.progress and back.scores("anger").tolist() == exp.scores("anger").tolist()
    # stopped at the estimate after the one that set the event: what had been computed by then
    assert len(seen) == 3 and finished(seen[-1]) == finished(exp)
    assert finished(exp) != finished(explain(tiny_model, TEXT, method, None, params))


@pytest.mark.parametrize("method,params", CASES)
def test_on_partial_returning_false_stops_at_that_estimate(tiny_model, method, params):
    seen: list[Explanation] = []
    exp = explain(tiny_model, TEXT, method, None, params, on_partial=lambda e: seen.append(e) or False)
    assert len(seen) == 1 and exp is seen[0] and exp.partial


def test_a_stop_without_estimates_still_returns_what_was_computed(tiny_model):
    calls = []

    def stop() -> bool:  # a callable works as well as an Event: stop at the third check
        calls.append(1)
        return len(calls) >= 3

    exp = explain(tiny_model, TEXT, "lime", None, {"samples": 400, "batch_size": 16}, stop=stop)
    assert exp.partial and 0 < exp.progress["done"] < 400 and exp.diagnostics["model_calls"] < 400


def test_partial_results_are_not_cached(tiny_model):
    params = {"samples": 200, "batch_size": 16, "seed": 9}
    stopped = explain_cached(tiny_model, TEXT, "lime", ["joy"], params, on_partial=lambda e: False)
    assert stopped.partial
    full = explain_cached(tiny_model, TEXT, "lime", ["joy"], params)
    assert not full.partial and explain_cached(tiny_model, TEXT, "lime", ["joy"], params) is full


def test_ig_first_estimate_is_the_two_point_gauss_legendre_integral(tiny_model):
    from captum.attr import IntegratedGradients

    text = "happy and sad day"  # every label: the coarse pass takes them all from one batched backward pass
    first = next(iter(explain_progressive(tiny_model, text, "ig", None, {"n_steps": 20, "precision": "fp32"})))
    assert first.partial and first.progress == {"done": 0, "total": 20, "unit": "steps"}
    _, read, model_words = tiny_model.words(text)
    batches = tiny_model.batches(model_words)
    inputs, bases = tiny_model.input_embeddings(batches), tiny_model.baselines(batches)
    ig = IntegratedGradients(lambda x: tiny_model.forward_embeds([x], batches, len(model_words)))
    assert list(first.labels) == tiny_model.labels and len(tiny_model.labels) > 1
    for j, label in enumerate(tiny_model.labels):
        attr = ig.attribute(inputs[0], baselines=bases[0], target=j, n_steps=2, method="gausslegendre")
        per_token = attr.sum(-1)[0].detach()
        words = [per_token[batches[0]["word_index"][0] == i].sum().item() for i in range(len(model_words))]
        np.testing.assert_allclose(first.scores(label)[read], words, atol=1e-6)


def test_a_method_that_is_not_progressive_streams_its_result_only(tiny_model):
    out = list(explain_progressive(tiny_model, TEXT, "attention", None, {}))
    assert len(out) == 1 and not out[0].partial
    assert finished(out[0]) == finished(explain(tiny_model, TEXT, "attention", None, {}))


def test_lime_draws_its_perturbations_exactly_as_the_lime_package_does():
    from lime.lime_text import IndexedString, LimeTextExplainer

    from emoscope.explain.lime import neighbourhood
    from emoscope.text import segment_words

    def explainer():
        return LimeTextExplainer(split_expression=lambda s: [w.text for w in segment_words(s)], bow=False,
                                 mask_string="", random_state=7)

    data, texts, distances = neighbourhood(explainer(), TEXT, 120)
    seen: list[str] = []
    lime = explainer()
    indexed = IndexedString(TEXT, bow=False, split_expression=lime.split_expression, mask_string="")
    their_data, _, their_distances = lime._LimeTextExplainer__data_labels_distances(  # the package's own sampler
        indexed, lambda batch: seen.extend(batch) or np.zeros((len(batch), 2)), 120)
    assert texts == seen and np.array_equal(data, their_data) and np.array_equal(distances, their_distances)


def test_explain_page_keeps_each_estimate_and_shows_a_stopped_one_marked_partial(tiny_bundle, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    shutil.copytree(tiny_bundle, tmp_path / "tiny")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120).run()
    at.switch_page("pages/explain.py").run()
    at.text_area(key="explain_text").input(TEXT).run()
    at.radio(key="explain_method").set_value("LIME").run()
    next(b for b in at.button if b.label == "Explain").click().run()
    assert not at.exception and not at.warning  # finished: no partial note
    request, estimate = at.session_state["explain_partial"]  # the last estimate the run showed, kept for Stop
    assert request == at.session_state["explain_last"] and estimate.partial and estimate.method == "lime"
    assert any("faithfulness for" in c.value for c in at.caption)
    at.session_state["explain_stopped"] = request  # what the Stop button's callback records
    at.run()
    assert not at.exception
    done, total = estimate.progress["done"], estimate.progress["total"]
    assert f"Stopped: estimate from {done:,} of {total:,} samples (partial)" in at.warning[0].value
    assert any("es-word" in h.proto.body for h in at.get("html"))
