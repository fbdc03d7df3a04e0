"""Errors page: per class, the false positives and false negatives on the validation set.

The texts are user text: the chosen one through ``render.text_html``, label names through
``render.escape_markdown``; the table shows cells as plain text."""

import streamlit as st

from emoscope.analysis import error_table
from emoscope.app.markup import show_html
from emoscope.app.state import current_thresholds, require_predictor, require_validation
from emoscope.render import escape_markdown, text_html

st.header("Errors, class by class")
predictor = require_predictor()
validation = require_validation(predictor, "This bundle holds no validation predictions.")
thresholds = current_thresholds(predictor)
c1, c2, c3 = st.columns([1, 1, 2])
label = c1.selectbox("Label", predictor.labels, key="errors_label")
kind = c2.radio("Errors", ["false positives", "false negatives"], key="errors_kind")
query = c3.text_input("Search the texts", key="errors_query")
table = error_table(validation.texts, validation.labels, validation.probs, thresholds, predictor.labels, label,
                    "fp" if kind == "false positives" else "fn", query, validation.mask, validation.ids)
st.caption(f"{len(table)} {kind} for **{escape_markdown(label)}** (threshold {thresholds[predictor.labels.index(label)]:.2f}), "
           + ("most confident first." if kind == "false positives" else "most confident misses first."))
st.dataframe(table.drop(columns=["index"]), hide_index=True, width="stretch",
             column_config={"probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f")})
if len(table):
    pick = st.selectbox("Open one", range(len(table)), format_func=lambda i: f"{table['probability'][i]:.3f} · {table['text'][i][:90]}",
                        key="errors_pick")
    show_html(text_html(table["text"][pick]))
    st.caption(f"gold: {escape_markdown(table['gold'][pick]) or '—'} · "
               f"predicted: {escape_markdown(table['predicted'][pick]) or '—'}")
    if st.button("Explain this text"):
        st.session_state["explain_text"] = table["text"][pick]
        st.session_state["explain_labels"] = [label]
        st.switch_page("pages/explain.py")
