"""Evaluate page: confusion matrices, report, co-occurrence, calibration, ROC-AUC.

An uploaded file's probabilities are cached (``state.upload_probabilities``, keyed by the file's hash,
the bundle and its mtime), so moving a widget reruns no model; the first time, they are computed
in this session's turn in the work queue (``emoscope.app.work_queue``). Label names reach the
charts through ``render.plot_text`` and messages through ``render.escape_markdown``.
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from emoscope.analysis import expected_calibration_error, reliability
from emoscope.app.charts import confusion_grid, cooccurrence_figure, reliability_figure
from emoscope.bundle import manifest_mtime
from emoscope.app.state import (current_thresholds, file_digest, require_predictor, require_validation,
                                upload_probabilities)
from emoscope.app.work_queue import in_turn
from emoscope.data import align_labels, load_dataset
from emoscope.errors import EmoScopeError
from emoscope.metrics import compute_metrics, label_cooccurrence, multilabel_confusion
from emoscope.render import escape_markdown
from emoscope.thresholds import apply_thresholds

st.header("Evaluate")
predictor = require_predictor()
labels = predictor.labels
thresholds = current_thresholds(predictor)
source = st.radio("Data", ["the bundle's validation set", "an uploaded labelled file"], horizontal=True)
if source.startswith("the bundle"):
    data = require_validation(predictor, "This bundle holds no validation predictions; upload a labelled file instead.")
    y, probs, mask = data.labels, data.probs, data.mask
else:
    upload = st.file_uploader("Labelled CSV/TSV: a `text` column and one 0/1 column per label", type=["csv", "tsv", "txt"])
    if upload is None:
        st.stop()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(upload.name).name
        path.write_bytes(upload.getvalue())
        try:
            dataset = align_labels(load_dataset(str(path)), labels)
        except EmoScopeError as exc:
            st.error(f"This file cannot be used: {escape_markdown(exc)}")
            st.stop()
    with st.spinner(f"Predicting {len(dataset)} texts…"):
        digest = file_digest(upload.name, upload.getvalue())
        probs = upload_probabilities(digest, str(predictor.path), manifest_mtime(predictor.path), dataset.texts,
                                     run=lambda work: in_turn("Scoring the upload", work))
    y, mask = dataset.labels, dataset.label_mask

metrics = compute_metrics(y, probs, thresholds, label_names=labels, label_mask=mask)
c = st.columns(5)
for col, (name, key) in zip(c, [("macro-F1", "macro_f1"), ("micro-F1", "micro_f1"), ("Jaccard", "jaccard"),
                                ("Hamming loss", "hamming_loss"), ("ROC-AUC (macro)", "roc_auc_macro")]):
    col.metric(name, "—" if metrics[key] is None or np.isnan(metrics[key]) else f"{metrics[key]:.3f}")
st.caption(f"{metrics['n_samples']} texts, under the thresholds of the Thresholds page.")

st.subheader("Per-class confusion matrices")
predicted = apply_thresholds(probs, thresholds)
st.plotly_chart(confusion_grid(multilabel_confusion(y, predicted, mask), labels), width="stretch")

st.subheader("Classification report")
report = pd.DataFrame([{"label": n, "precision": r["precision"], "recall": r["recall"], "F1": r["f1"],
                        "support": r["support"], "ROC-AUC": r["roc_auc"],
                        "ECE": expected_calibration_error(y[:, j], probs[:, j], mask=None if mask is None else mask[:, j])}
                       for j, (n, r) in enumerate(metrics["per_class"].items())])
st.dataframe(report, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "F1", "ROC-AUC", "ECE")})

st.subheader("Label co-occurrence: P(column | row)")
g1, g2 = st.columns(2)
g1.plotly_chart(cooccurrence_figure(label_cooccurrence(y, normalize=True), labels, "gold"), width="stretch")
g2.plotly_chart(cooccurrence_figure(label_cooccurrence(predicted, normalize=True), labels, "predicted"), width="stretch")

st.subheader("Reliability")
chosen = st.selectbox("Label", labels, key="reliability_label")
j = labels.index(chosen)
st.plotly_chart(reliability_figure(reliability(y[:, j], probs[:, j], mask=None if mask is None else mask[:, j]), chosen),
                width="stretch")
