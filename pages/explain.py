"""Explain page: which words drove each label (LIME, Integrated Gradients, attention).

Each method's widgets come from its declared parameters (``emoscope.app.explain_widgets``);
the page itself knows no method's parameters. LIME and Integrated Gradients take seconds of every
core: they run in this session's turn in the work queue (``emoscope.app.work_queue``), unless
the explanation is cached already. User text (the text, label and encoder names) is escaped:
``render.render_html`` for the highlighted text, ``escape_markdown`` in captions and tab labels,
``render.plot_text`` in the charts.
"""

import json

import streamlit as st

from emoscope.app.charts import attention_figure, top_words_figure
from emoscope.app.explain_widgets import param_widgets
from emoscope.app.markup import show_html
from emoscope.bundle import manifest_mtime
from emoscope.app.state import load_explain_model, require_predictor
from emoscope.app.work_queue import turn
from emoscope.errors import EmoScopeError
from emoscope.explain import METHODS, cached_explanation, explain_cached, faithfulness, render_html
from emoscope.render import escape_markdown

QUEUED = ("lime", "ig")  # the methods that take seconds of every core: one session at a time per slot

st.header("Explain a prediction")
predictor = require_predictor()
model = load_explain_model(str(predictor.path), manifest_mtime(predictor.path))
if "explain_text" not in st.session_state:
    st.session_state["explain_text"] = st.session_state.get("predict_text", "")
text = st.text_area("Text", key="explain_text", height=100)
c1, c2 = st.columns([1, 2])
by_title = {info.title: info for info in METHODS.values()}
method_name = c1.radio("Method", list(by_title), key="explain_method")
info = by_title[method_name]
method = info.name
default_labels = [lab for lab in st.session_state.get("explain_labels", []) if lab in predictor.labels]
if not default_labels and text.strip():
    try:  # the labels the model predicts for this text (or its most probable one)
        [first] = predictor.predict([text])
        default_labels = first.labels or [max(first.probabilities, key=first.probabilities.get)]
    except EmoScopeError:
        default_labels = []
labels = c2.multiselect("Labels", predictor.labels, default=default_labels or predictor.labels[:1], key="explain_label_pick")
params = param_widgets(info, model, c2)

if not text.strip():
    st.caption("Type a text, or come here from Predict or Errors.")
    st.stop()
if not labels:
    st.caption("Choose at least one label.")
    st.stop()
if not st.button("Explain", type="primary") and st.session_state.get("explain_last") != (text, method, tuple(labels), json.dumps(params)):
    st.stop()
st.session_state["explain_last"] = (text, method, tuple(labels), json.dumps(params))


def compute():
    """The explanation and its faithfulness, with a progress bar."""
    bar = st.progress(0.0, text=f"Computing {method_name} for {len(labels)} label(s)…")
    result = explain_cached(model, text, method, labels, params,
                            on_progress=lambda f: bar.progress(f, text=f"Computing {method_name} for {len(labels)} "
                                                                      f"label(s)… {f:.0%}"))
    with st.spinner("Checking faithfulness…"):
        checked = faithfulness(model, result)
    bar.empty()
    return result, checked


try:
    if method in QUEUED and cached_explanation(model, text, method, labels, params) is None:
        with turn(method_name):
            exp, faith = compute()
    else:
        exp, faith = compute()
except EmoScopeError as exc:
    st.error(escape_markdown(exc))
    st.stop()

ran_in = f" · ran in {exp.diagnostics['precision']}" if "precision" in exp.diagnostics else ""
st.caption(f"{method_name} · {exp.runtime_s:.2f} s{ran_in} · parameters {escape_markdown(json.dumps(exp.params))}")
for label in exp.labels:
    show_html(render_html(exp, label))
    f = faith[label]
    st.caption(f"faithfulness for {escape_markdown(label)}: comprehensiveness {f['comprehensiveness']:+.3f} (higher is better), "
               f"sufficiency {f['sufficiency']:+.3f} (lower is better)")
tabs = st.tabs([f"top words: {escape_markdown(label)}" for label in exp.labels])
for tab, label in zip(tabs, exp.labels):
    tab.plotly_chart(top_words_figure(exp.labels[label].top(10, exp.words), label), width="stretch")
for name, matrix in exp.extra.get("attention", {}).items():  # attention: one word x word map per encoder
    read = "rollout" if exp.params.get("rollout") else f"layer {exp.params.get('layer')}"
    st.plotly_chart(attention_figure(matrix["word_matrix"], [w.text for w in exp.words],
                                     f"{name}: {read} ({matrix['layers']} layers × {matrix['heads']} heads)"), width="stretch")
if "convergence_delta" in exp.diagnostics:  # integrated gradients
    st.caption("completeness gap per label (attributions vs probability change): "
               + ", ".join(f"{escape_markdown(k)} {v:+.4f}" for k, v in exp.diagnostics["convergence_delta"].items()))
d1, d2 = st.columns(2)
d1.download_button("Download JSON", json.dumps(exp.to_json(), ensure_ascii=False, indent=1), "explanation.json",
                   "application/json")
d2.download_button("Download HTML", '<!doctype html><meta charset="utf-8">' + "".join(render_html(exp, lab) for lab in exp.labels),
                   "explanation.html", "text/html")
