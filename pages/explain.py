"""Explain page: which words drove each label (LIME, Integrated Gradients, attention).

Each method's widgets come from its declared parameters (``emoscope.app.explain_widgets``);
the page itself knows no method's parameters. LIME and Integrated Gradients take seconds of every
core: they run in this session's turn in the work queue (``emoscope.app.work_queue``), unless
the explanation is cached already. They are progressive: the result area shows a first estimate
within about a second and is redrawn in place as samples or steps arrive; Stop keeps the last
estimate (marked partial, here and in the JSON) without reloading the page: pressing it reruns
the script, which interrupts the run at its next progress report, and the rerun shows the
estimate the run had stored in the session. The fast word-vector attribution (``layer-ig``) is
the default method where it is registered; exact IG stays as the thorough option.
User text (the text, label and encoder names) is escaped: ``render.render_html`` for the
highlighted text, ``escape_markdown`` in captions and tab labels, ``render.plot_text`` in the charts.
"""

import json
import time

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
DEFAULT_METHOD = "layer-ig"  # the fast attribution, where registered; exact IG is the thorough option
REDRAW_S = 0.4  # an estimate is drawn at most this often (each one is stored for Stop)

st.header("Explain a prediction")
predictor = require_predictor()
model = load_explain_model(str(predictor.path), manifest_mtime(predictor.path))
if "explain_text" not in st.session_state:
    st.session_state["explain_text"] = st.session_state.get("predict_text", "")
text = st.text_area("Text", key="explain_text", height=100)
c1, c2 = st.columns([1, 2])
by_title = {info.title: info for info in METHODS.values()}
titles = list(by_title)
default = titles.index(METHODS[DEFAULT_METHOD].title) if DEFAULT_METHOD in METHODS else 0
method_name = c1.radio("Method", titles, index=default, key="explain_method")
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
request = (text, method, tuple(labels), json.dumps(params))


def stop_run(running: tuple) -> None:
    """The Stop button's callback (runs before the rerun it causes): keep that run's last estimate."""
    st.session_state["explain_stopped"] = running


b1, b2, _ = st.columns([1, 1, 5])
clicked = b1.button("Explain", type="primary")
if clicked:
    st.session_state.pop("explain_stopped", None)
elif st.session_state.get("explain_last") != request:
    st.stop()
st.session_state["explain_last"] = request
stored = st.session_state.get("explain_partial")
stopped = st.session_state.get("explain_stopped") == request and stored is not None and stored[0] == request
will_run = method in QUEUED and not stopped and cached_explanation(model, text, method, labels, params) is None
b2.button("Stop", key="explain_stop", disabled=not will_run, on_click=stop_run, args=(request,),
          help="keep the estimate computed so far")
area = st.empty()


def show_estimate(exp) -> None:
    """A partial result in the result area: the highlighted words per label and how far it got."""
    with area.container():
        st.caption(f"{method_name} · {partial_note(exp)} · {exp.runtime_s:.1f} s")
        for label in exp.labels:
            show_html(render_html(exp, label))


def partial_note(exp) -> str:
    done, total, unit = exp.progress["done"], exp.progress["total"], exp.progress["unit"]
    return f"estimate from {done:,} of {total:,} {unit} (partial)"


def compute():
    """The explanation (estimates drawn in place as they arrive) and its faithfulness, with a progress bar."""
    bar = st.progress(0.0, text=f"Computing {method_name} for {len(labels)} label(s)…")
    drawn = [0.0]

    def on_partial(exp) -> None:
        st.session_state["explain_partial"] = (request, exp)
        if time.monotonic() - drawn[0] >= REDRAW_S:
            show_estimate(exp)
            drawn[0] = time.monotonic()

    result = explain_cached(model, text, method, labels, params,
                            on_progress=lambda f: bar.progress(f, text=f"Computing {method_name} for {len(labels)} "
                                                                      f"label(s)… {f:.0%}"),
                            on_partial=on_partial if method in QUEUED else None)
    with st.spinner("Checking faithfulness…"):
        checked = faithfulness(model, result)
    bar.empty()
    return result, checked


try:
    if stopped:
        exp = stored[1]
        faith = faithfulness(model, exp)
    elif will_run:
        with turn(method_name):
            exp, faith = compute()
    else:
        exp, faith = compute()
except EmoScopeError as exc:
    st.error(escape_markdown(exc))
    st.stop()

area.empty()
if exp.partial:
    st.warning(f"Stopped: {partial_note(exp)}. Press Explain to compute the whole explanation.")
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
