"""Thresholds page: one slider per label over the bundle's validation predictions, live metrics.

Saving into the bundle writes to the server: in a shared deployment it needs the admin password
(``emoscope.app.access``). Label names are user text: escaped in the sliders' labels (Markdown)
and the chart (``render.plot_text``)."""

import json

import numpy as np
import pandas as pd
import streamlit as st

from emoscope import bundle as bundle_io
from emoscope.analysis import precision_recall_curve
from emoscope.app.access import WRITE_HELP, allow_write, write_gate
from emoscope.app.charts import pr_curve_figure
from emoscope.bundle import manifest_mtime
from emoscope.app.state import (current_thresholds, forget_bundle, forget_thresholds, require_predictor,
                                require_validation, thresholds_key)
from emoscope.errors import EmoScopeError
from emoscope.metrics import compute_metrics
from emoscope.render import escape_markdown
from emoscope.thresholds import tune_thresholds

st.header("Per-class thresholds")
predictor = require_predictor()
validation = require_validation(predictor, "This bundle holds no validation predictions, so thresholds cannot be tuned here.")

labels = predictor.labels
key = thresholds_key(predictor)
thresholds = current_thresholds(predictor)
st.caption(f"Validation set: {len(validation.texts)} texts. Moving a slider runs no model: the metrics are "
           "recomputed from the stored validation probabilities. Your thresholds stay in this session until "
           "you save them into the bundle or download them.")

c1, c2, c3 = st.columns(3)
if c1.button("Tune automatically (max F1 per class)"):
    st.session_state[key] = [float(t) for t in tune_thresholds(validation.labels, validation.probs, validation.mask)]
    for j, label in enumerate(labels):
        st.session_state[f"slider::{label}"] = st.session_state[key][j]
    st.rerun()
if c2.button("Reset to the bundle's thresholds"):
    st.session_state[key] = [float(t) for t in predictor.thresholds]
    for j, label in enumerate(labels):
        st.session_state[f"slider::{label}"] = st.session_state[key][j]
    st.rerun()

cols = st.columns(min(4, len(labels)))
values = []
for j, label in enumerate(labels):
    slider_key = f"slider::{label}"
    if slider_key not in st.session_state:
        st.session_state[slider_key] = float(thresholds[j])
    values.append(cols[j % len(cols)].slider(escape_markdown(label), 0.0, 1.0, step=0.01, key=slider_key))
st.session_state[key] = values
thresholds = np.asarray(values, dtype=float)

metrics = compute_metrics(validation.labels, validation.probs, thresholds, label_names=labels, label_mask=validation.mask)
m1, m2, m3, m4 = st.columns(4)
m1.metric("macro-F1", f"{metrics['macro_f1']:.3f}")
m2.metric("micro-F1", f"{metrics['micro_f1']:.3f}")
m3.metric("Jaccard", f"{metrics['jaccard']:.3f}")
m4.metric("Hamming loss", f"{metrics['hamming_loss']:.3f}")
table = pd.DataFrame([{"label": name, "threshold": thresholds[j], "precision": row["precision"], "recall": row["recall"],
                       "F1": row["f1"], "support": row["support"]}
                      for j, (name, row) in enumerate(metrics["per_class"].items())])
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("threshold", "precision", "recall", "F1")})

chosen = st.selectbox("Precision–recall curve for", labels, key="pr_label")
j = labels.index(chosen)
curve = precision_recall_curve(validation.labels[:, j], validation.probs[:, j],
                               None if validation.mask is None else validation.mask[:, j])
row = metrics["per_class"][chosen]
st.plotly_chart(pr_curve_figure(curve, (row["recall"], row["precision"]), chosen), width="stretch")

writable = write_gate()  # shared deployment: the admin box, before the button it unlocks
s1, s2 = st.columns(2)
if s1.button("Save these thresholds into the bundle", disabled=not writable, help=None if writable else WRITE_HELP) \
        and allow_write("Saving thresholds into the bundle"):
    loaded_at = manifest_mtime(predictor.path)
    try:
        bundle_io.update_thresholds(predictor.path, thresholds)
    except EmoScopeError as exc:
        st.error(f"Could not save: {escape_markdown(exc)}")
    else:
        st.success(f"Saved into {escape_markdown(predictor.path / 'manifest.json')}; the model reloads with them.")
        # The new manifest mtime makes this bundle load afresh (with the saved thresholds) on the
        # next run; its old copies are dropped, every other bundle stays loaded for every user.
        forget_bundle(predictor.path, loaded_at)
        forget_thresholds(predictor)
s2.download_button("Download thresholds (JSON)", json.dumps(dict(zip(labels, map(float, thresholds))), indent=1),
                   file_name=f"{predictor.name}-thresholds.json", mime="application/json")
