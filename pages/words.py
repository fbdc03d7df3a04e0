"""Words across a dataset: which words raise and lower each label over many texts (layer IG).

The data: the bundle's validation set, a dataset spec (``semeval2018:ar:dev``) or an uploaded file
(labelled, or unlabelled with a ``text`` column). Every text is attributed once for every label
(``emoscope.explain.dataset``: the encoders batched over the texts, cached on disk per bundle, data
and steps); a miss runs in this session's turn in the work queue with a progress bar, a hit is a
file read. Then label, language and subset (gold, predicted, errors, false positives…, under this
user's thresholds) re-aggregate without any model (``emoscope.explain.word_summary``). Example texts
show the word highlighted through ``render.highlight_html``; every label, word and text reaching a
caption goes through ``escape_markdown``; tables and select boxes are plain text.
"""

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from emoscope.app.markup import show_html
from emoscope.app.state import current_thresholds, load_explain_model, require_predictor, require_validation
from emoscope.app.work_queue import turn
from emoscope.bundle import manifest_mtime
from emoscope.errors import EmoScopeError
from emoscope.explain.dataset import TextsToExplain, cached_attributions, dataset_attributions, load_texts
from emoscope.explain.word_summary import ALL_LANGUAGES, NEEDS_GOLD, SUBSETS, WordIndex, summarize, summary_csv
from emoscope.render import escape_markdown, highlight_html

SOURCES = ("the bundle's validation set", "a dataset spec", "an uploaded file")

st.header("Words across a dataset")
st.caption("Which words raise and lower each label's probability over many texts: layer IG of every text, "
           "aggregated. It attributes to contextual word vectors (what a word's context wrote into it counts "
           "too), not input tokens.")
predictor = require_predictor()
model = load_explain_model(str(predictor.path), manifest_mtime(predictor.path))
source = st.radio("Data", SOURCES, horizontal=True, key="words_source")


def read_data():
    """The texts to explain (and their gold labels), or None while nothing is chosen yet."""
    if source == SOURCES[0]:
        return TextsToExplain.of_validation(require_validation(predictor, "This bundle holds no validation set; "
                                                                          "choose a dataset spec or upload a file."))
    if source == SOURCES[1]:
        spec = st.text_input("Dataset spec or file path", placeholder="semeval2018:ar:dev", key="words_spec").strip()
        return load_texts(spec, model) if spec else None
    upload = st.file_uploader("CSV/TSV/JSONL: a `text` column, and 0/1 label columns if you have them",
                              type=["csv", "tsv", "jsonl"], key="words_upload")
    if upload is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(upload.name).name
        path.write_bytes(upload.getvalue())
        return load_texts(str(path), model)


try:
    data = read_data()
except EmoScopeError as exc:
    st.error(f"This data cannot be used: {escape_markdown(exc)}")
    st.stop()
if data is None:
    st.stop()
steps = st.select_slider("Steps", options=[4, 8, 16, 32], value=16, key="words_steps",
                         help="integration steps per text (the encoders run once per text whatever this is)")
params = {"n_steps": steps}
attributions = cached_attributions(model, data.texts, params)
if attributions is None:
    st.caption(f"{len(data.texts):,} texts from {escape_markdown(data.name)}; not explained with these settings yet.")
    if not st.button("Explain the dataset", type="primary", key="words_run"):
        st.stop()
    bar = st.progress(0.0, text="Explaining…")
    try:
        with turn("Explaining the dataset"):
            attributions = dataset_attributions(
                model, data.texts, params,
                lambda done, total: bar.progress(done / total, text=f"Explaining… {done:,} of {total:,} texts"))
    except EmoScopeError as exc:
        st.error(escape_markdown(exc))
        st.stop()
    bar.empty()

index = WordIndex.of(attributions)  # words grouped once per run: every table below reads it
languages = [ALL_LANGUAGES, *sorted(set(attributions.languages))]
subsets = [s for s in SUBSETS if data.gold is not None or s not in NEEDS_GOLD]
c1, c2, c3, c4 = st.columns(4)
label = c1.selectbox("Label", predictor.labels, key="words_label")
language = c2.selectbox("Language", languages, key="words_language")
subset = c3.selectbox("Texts", subsets, key="words_subset",
                      help="per label, under your thresholds: gold = annotated with it, predicted = above the threshold, "
                           "false-positives = predicted but not gold, …")
min_count = c4.number_input("Occurrences at least", min_value=1, value=3, step=1, key="words_min_count")
try:
    summary = summarize(attributions, current_thresholds(predictor), data.gold, data.mask, [label], [language], subset,
                        top_k=20, min_count=int(min_count), n_examples=3, index=index)
except EmoScopeError as exc:
    st.error(escape_markdown(exc))
    st.stop()
block = summary["labels"][label][language]
how = "read from the cache" if attributions.cached else f"computed in {attributions.seconds:.1f} s"
st.caption(f"{block['texts']:,} of {len(attributions.texts):,} texts in this selection · {how} · "
           f"{escape_markdown(data.name)}")

columns = ["word", "count", "texts", "mean", "std", "total"]
left, right = st.columns(2)
for column, direction, title in ((left, "raise", "Raise"), (right, "lower", "Lower")):
    column.subheader(f"{title} {escape_markdown(label)}")
    column.dataframe(pd.DataFrame(block[direction], columns=columns + ["key", "examples"])[columns], hide_index=True,
                     width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("mean", "std", "total")})

listed = [(d, w) for d in ("raise", "lower") for w in block[d]]
if listed:
    choice = st.selectbox("Example texts for", range(len(listed)), key="words_example",
                          format_func=lambda i: f"{listed[i][1]['word']} ({listed[i][0]}s, mean {listed[i][1]['mean']:+.4f})")
    direction, word = listed[choice]
    for example in word["examples"]:
        show_html(highlight_html(example["text"], example["start"], example["end"], example["score"],
                                 f"{label}: {example['score']:+.4f} · p = {example['probability']:.3f}"))

full = summarize(attributions, current_thresholds(predictor), data.gold, data.mask, None, None, subset,
                 top_k=20, min_count=int(min_count), n_examples=3, index=index)
full = {"data": data.name, **full}
d1, d2 = st.columns(2)
d1.download_button("Download JSON", json.dumps(full, ensure_ascii=False, indent=1), "words.json", "application/json")
d2.download_button("Download CSV", summary_csv(full), "words.csv", "text/csv")
