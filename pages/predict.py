"""Predict page: type Arabic or English text, see each label's probability and the labels.

User text (the typed text, the bundle's name and label names) reaches the page escaped: the
text as HTML through ``render.text_html``, the rest as Markdown through ``render.escape_markdown``
and in the chart through ``render.plot_text`` (``emoscope.app.charts``)."""

import streamlit as st

from emoscope.app.charts import probability_figure
from emoscope.app.markup import show_html
from emoscope.app.state import current_thresholds, require_predictor
from emoscope.errors import EmoScopeError
from emoscope.render import escape_markdown, text_html

st.header("Predict emotions")
predictor = require_predictor()

st.caption(f"Model: **{escape_markdown(predictor.name)}** · labels: {', '.join(map(escape_markdown, predictor.labels))}")
if "predict_text" not in st.session_state:
    # ?text=… in the URL prefills the box, so a prediction can be shared as a link.
    st.session_state["predict_text"] = st.query_params.get("text", "")
EXAMPLES = {
    "🇸🇦 فرح": "الحمد لله نجحت في الامتحان، أنا سعيد جداً اليوم 😍",
    "🇸🇦 خوف وحزن": "خائف من الغد وحزين على ما حدث لأصدقائي",
    "🇬🇧 anger": "I can't believe they cancelled my flight again, this is outrageous!",
    "🇬🇧 joy": "Best day ever, we finally got the keys to our new home 🎉",
}
example_cols = st.columns(len(EXAMPLES))
for col, (name, example) in zip(example_cols, EXAMPLES.items()):
    if col.button(name, key=f"example::{name}"):
        st.session_state["predict_text"] = example
text = st.text_area("Text (Arabic or English)", key="predict_text", height=120,
                    placeholder="اكتب جملة هنا… or type an English sentence")
if not text.strip():
    st.caption("Type or paste a text to see its emotions.")
    st.stop()

thresholds = current_thresholds(predictor)
try:
    [result] = predictor.predict([text], thresholds=thresholds)
except EmoScopeError as exc:
    st.error(escape_markdown(exc))  # the message may quote the text: shown as text
    st.stop()

if result.truncated:
    st.warning("The text is very long: only its beginning was used.")
show_html(text_html(text))
language = {"ar": "Arabic", "en": "English", "mixed": "mixed Arabic/English"}.get(result.language, "unknown")
col1, col2 = st.columns([2, 1])
with col1:
    st.plotly_chart(probability_figure(predictor.labels, [result.probabilities[label] for label in predictor.labels],
                                       [float(t) for t in thresholds]), width="stretch")
with col2:
    st.subheader("Predicted")
    st.markdown(", ".join(f"**{escape_markdown(label)}**" for label in result.labels) if result.labels
                else "_no emotion above its threshold_")
    st.caption(f"Detected language: {language}")
    if st.button("Explain this prediction"):
        st.session_state["explain_text"] = text
        st.session_state["explain_labels"] = result.labels or [max(result.probabilities, key=result.probabilities.get)]
        st.switch_page("pages/explain.py")
