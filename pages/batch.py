"""Batch page: upload a CSV/TSV/JSONL file, choose the text column, predict under this user's thresholds, download.

The upload and its predictions live in this session's one work folder (``emoscope.app.workdir``):
a new upload replaces the previous one's files, and the folder goes with the session. The
prediction runs in this session's turn in the work queue (``emoscope.app.work_queue``). Label
names and messages are escaped (``render.escape_markdown``); the preview table shows cells as
plain text.
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from emoscope.app.state import current_thresholds, require_predictor
from emoscope.app.work_queue import turn
from emoscope.app.workdir import fresh_workdir, session_workdir
from emoscope.bundle import manifest_mtime
from emoscope.errors import EmoScopeError
from emoscope.models.fast_cpu import FAST_PATH
from emoscope.predict import Predictor, file_columns


@st.cache_resource(show_spinner="Preparing the fast CPU path…", max_entries=2)
def _fast_predictor(path: str, mtime: float) -> Predictor:
    """The bundle on the fast CPU path (``--fast``), with its own thresholds; ``mtime`` as ``load_predictor``'s."""
    return Predictor(path, fast=True)
from emoscope.render import escape_markdown

st.header("Batch prediction")
predictor = require_predictor()
thresholds = current_thresholds(predictor)
has_fast = FAST_PATH in (predictor.manifest.path_thresholds or {}) and predictor.device.type == "cpu"
fast = st.checkbox("Fast CPU path (ONNX Runtime)", key="batch_fast", disabled=not has_fast,
                   help="The encoders under ONNX Runtime: about 2x faster on a busy 2-core CPU (docs/BENCHMARKS.md), "
                        "with thresholds of its own tuned on the bundle's validation texts." if has_fast else
                   "This bundle has no thresholds for the fast path yet (or runs on a GPU): "
                   "`emoscope tune-fast --model <bundle>` adds them.")
upload = st.file_uploader("CSV, TSV or JSONL file (UTF-8)", type=["csv", "tsv", "txt", "jsonl", "ndjson"], key="batch_file")
if upload is None:
    st.caption("Each row gets `prob_<label>` and `<label>` (0/1, under your thresholds from the Thresholds page) "
               "columns; rows with an empty text are kept with empty cells. The upload size limit is set in "
               "`.streamlit/config.toml`.")
    st.stop()

workdir = session_workdir("batch")
source = workdir / Path(upload.name).name
if st.session_state.get("batch_upload") != upload.file_id or not source.exists():
    workdir = fresh_workdir("batch")  # a new upload: the previous one's files go
    source.write_bytes(upload.getvalue())
    st.session_state["batch_upload"] = upload.file_id
try:
    columns = file_columns(source)
except EmoScopeError as exc:
    st.error(f"This file cannot be read: {escape_markdown(exc)}")
    st.stop()
default = next((i for i, c in enumerate(columns) if c.lower() in ("text", "tweet", "sentence")), 0)
column = st.selectbox("Text column", columns, index=default, key="batch_column")
out_name = f"{source.stem}-emoscope{source.suffix if source.suffix in ('.csv', '.tsv', '.jsonl') else '.csv'}"
if fast:
    predictor = _fast_predictor(str(predictor.path), manifest_mtime(predictor.path))
    thresholds = predictor.thresholds
shown_thresholds = ", ".join(f"{escape_markdown(label)} {t:.2f}" for label, t in zip(predictor.labels, thresholds))
st.caption(f"The 0/1 label columns use the fast path's own thresholds: {shown_thresholds}." if fast else
           f"The 0/1 label columns use your thresholds from the Thresholds page: {shown_thresholds}.")
if st.button("Predict", type="primary"):
    total = max(1, sum(1 for _ in source.open("rb")) - (0 if source.suffix in (".jsonl", ".ndjson") else 1))
    with turn("Batch prediction"):
        bar = st.progress(0.0, text="Predicting…")
        try:
            stats = predictor.predict_file(source, workdir / out_name, text_column=column, chunk_size=256,
                                           thresholds=thresholds,
                                           on_progress=lambda done: bar.progress(min(1.0, done / total),
                                                                                 text=f"{done} of ~{total} rows"))
        except EmoScopeError as exc:
            bar.empty()
            st.error(f"Prediction stopped: {escape_markdown(exc)}")
            st.stop()
    bar.progress(1.0, text="Done")
    st.session_state["batch_result"] = (upload.file_id, str(workdir / out_name), stats, shown_thresholds)
if "batch_result" in st.session_state:
    file_id, path, stats, used = st.session_state["batch_result"]
    path = Path(path)
    if file_id == upload.file_id and path.exists():  # results of this upload, not an earlier one
        msg = f"{stats['rows']} rows: {stats['predicted']} predicted"
        if stats["empty"]:
            msg += f", {stats['empty']} with an empty text (kept, no prediction)"
        st.success(f"{msg}; labels under your session thresholds ({used}).")
        if path.suffix == ".jsonl":
            preview = pd.read_json(path, lines=True, nrows=50)
        else:
            preview = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", nrows=50)
        st.dataframe(preview, width="stretch")
        st.download_button("Download the predictions", path.read_bytes(), file_name=path.name)
