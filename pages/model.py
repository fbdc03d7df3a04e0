"""Model page: the selected bundle's model card, section by section, with its training curves as charts.

Every piece of user text in the card is escaped by ``emoscope.card``; writing a card into a
bundle writes to the server, so in a shared deployment it needs the admin password
(``emoscope.app.access``)."""

import streamlit as st

from emoscope.app.access import WRITE_HELP, allow_write, write_gate
from emoscope.app.card_charts import class_loss_figure, training_curves_figure
from emoscope.app.state import forget_bundle, load_validation, require_predictor
from emoscope.bundle import add_card, manifest_mtime, read_training_log
from emoscope.card import CARD, card_sections, num, render_card
from emoscope.render import escape_markdown
from emoscope.errors import EmoScopeError

predictor = require_predictor()
manifest = predictor.manifest
loaded_at = manifest_mtime(predictor.path)
validation = load_validation(str(predictor.path), loaded_at)
try:
    log = read_training_log(predictor.path)
except EmoScopeError as exc:
    st.warning(f"The training log cannot be read: {escape_markdown(exc)}")
    log = []

st.header(f"Model card: {escape_markdown(manifest.name or predictor.path.name)}")
if CARD in manifest.files:
    st.caption(f"The same card is the bundle's {CARD} (with training_curves.svg beside it), written from the training "
               "run: the manifest, the validation data and the training log.")
else:
    st.info(f"This bundle was trained before model cards: it holds no {CARD} yet. The card below is drawn from its "
            "manifest, validation data and training log; `emoscope card --model DIR` or this button writes it in.")
    writable = write_gate()  # shared deployment: the admin box, before the button it unlocks
    if st.button("Write the card into the bundle", key="model_write_card", disabled=not writable,
                 help=None if writable else WRITE_HELP) and allow_write("Writing the card into the bundle"):
        try:
            add_card(predictor.path)
        except EmoScopeError as exc:
            st.error(f"Could not write the card: {escape_markdown(exc)}")
        else:
            forget_bundle(predictor.path, loaded_at)  # the new manifest loads afresh; other bundles stay loaded
            st.rerun()

scores = {split: (manifest.metrics.get(split) or {}).get("macro_f1") for split in ("validation", "eval")}
columns = st.columns(4)
columns[0].metric("validation macro-F1", num(scores["validation"], 3))
columns[1].metric("eval macro-F1", num(scores["eval"], 3))
columns[2].metric("training texts", num(manifest.n_train))
columns[3].metric("training time", f"{num(manifest.training.get('seconds'), 0)} s")
curves = training_curves_figure(log, manifest.training.get("best_epoch"))
if curves is not None:  # at the top, beside the headline figures; its numbers are in "Training curves" below
    st.plotly_chart(curves, width="stretch", key="model_curves")

for section in card_sections(manifest, validation, log, has_chart=False):
    st.subheader(section.title)
    if section.key == "curves":
        per_class = class_loss_figure(log, manifest.labels)
        if per_class is not None and st.toggle("Training loss per label", key="model_class_loss"):
            st.plotly_chart(per_class, width="stretch", key="model_class_curves")
    st.markdown(section.body)
    if section.code is not None:
        with st.expander("The recipe as TOML"):
            st.code(section.code, language=section.code_language)

st.download_button(f"Download the card ({CARD})", render_card(manifest, validation, log, has_chart=False), file_name=CARD,
                   mime="text/markdown", key="model_download")
