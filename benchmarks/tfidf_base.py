"""The stack's TF-IDF base: the reference on raw text vs on the words a stack reads, and its share of prediction time.

    python benchmarks/tfidf_base.py words                    # dev macro-F1, BRIGHTER arq and ary
    python benchmarks/tfidf_base.py latency PLAIN TFIDF      # two stacked bundles, same data, 64 arq dev texts
    python benchmarks/tfidf_base.py union                    # the reference alone, target vs target + extra data
    python benchmarks/tfidf_base.py alone RECIPE             # a stacked recipe's text bases alone, fit as the stack does
                                                             # (RECIPE: a name under training/configs, or a .toml path)

``words``: ``TfidfBaseline`` (5-fold thresholds) fit on train, scored on dev, once on the raw texts
and once on ``words.read_words(text, NormalizerConfig(), 64)`` joined by spaces (what the base reads).
``union``: the same on the stack's words, fit on the training set of ``brighter-L-frozen-tfidf-stack``
and of ``brighter-L-union-frozen-tfidf-stack`` (after the hold-out; extra data included), scored on dev.
``alone``: each text base of ``training/configs/RECIPE.toml`` (or of the recipe file RECIPE) as a
classifier of its own: fit by the stack's own ``fit_text_base`` (the recipe's training set, extra
data included, unannotated labels masked, the stack's words), its full fit (the bundle's model)
read on validation and eval, per-class thresholds chosen on the validation hold-out as the stack's
are, scored on the eval set (the "TF-IDF base alone" row beside ``emoscope ablate``'s encoder-alone rows).
``latency``: one torch thread; five alternating runs of each bundle's ``predict_proba`` and of the
TF-IDF base's logits alone, after a warm-up; medians. Needs ``EMOSCOPE_DATA_ROOT``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from emoscope.baseline import TfidfBaseline
from emoscope.config import load_config
from emoscope.data import load_dataset, load_training_data
from emoscope.metrics import compute_metrics
from emoscope.predict import Predictor
from emoscope.text import NormalizerConfig
from emoscope.thresholds import choose_thresholds
from emoscope.tfidf import text_of_words
from emoscope.training.stack.stage1 import StackTexts
from emoscope.training.stack.text_bases import fit_text_base
from emoscope.words import read_words


def words_vs_raw() -> None:
    for lang in ("arq", "ary"):
        train, dev = load_dataset(f"brighter:{lang}:train"), load_dataset(f"brighter:{lang}:dev")

        def words(ds):
            return [text_of_words(read_words(t, NormalizerConfig(), 64).model_words) for t in ds.texts]

        for name, tr, dv in (("raw text", train.texts, dev.texts), ("stack words", words(train), words(dev))):
            model = TfidfBaseline().fit(tr, train.labels, cv_folds=5, seed=0)
            f1 = compute_metrics(dev.labels, model.predict_proba(dv), model.thresholds_)["macro_f1"]
            print(f"{lang} {name}: dev macro-F1 {f1:.3f}")


def union() -> None:
    for lang in ("arq", "ary"):
        for recipe in (f"brighter-{lang}-frozen-tfidf-stack", f"brighter-{lang}-union-frozen-tfidf-stack"):
            config = load_config(f"training/configs/{recipe}.toml")
            data = load_training_data(config)

            def words(ds):
                return [text_of_words(read_words(t, config.text, config.stack.max_words).model_words) for t in ds.texts]

            model = TfidfBaseline().fit(words(data.train), data.train.labels, cv_folds=5, seed=0)
            f1 = compute_metrics(data.eval.labels, model.predict_proba(words(data.eval)), model.thresholds_)["macro_f1"]
            print(f"{recipe}: {len(data.train)} training texts, dev macro-F1 {f1:.3f}")


def alone(recipe: str) -> None:
    config = load_config(recipe if recipe.endswith(".toml") else f"training/configs/{recipe}.toml")
    data = load_training_data(config)
    texts = StackTexts.read(config, data)
    for base_cfg in config.bases:
        model = fit_text_base(base_cfg, config, data, texts, None).full.model  # the model the bundle keeps
        probs = {split: model.predict_proba([text_of_words(w) for w in texts.words[split]])
                 for split in ("validation", "eval")}
        val = data.validation
        thresholds = choose_thresholds(config.thresholds, val.labels, probs["validation"], val.label_mask)
        for split, ds in (("validation", val), ("eval", data.eval)):
            f1 = compute_metrics(ds.labels, probs[split], thresholds, label_mask=ds.label_mask)["macro_f1"]
            print(f"{recipe}: {base_cfg.label} base alone, {len(data.train)} training texts, {ds.name}: "
                  f"macro-F1 {f1:.3f}")


def latency(plain_path: str, tfidf_path: str, repeats: int) -> None:
    torch.set_num_threads(1)
    texts = load_dataset("brighter:arq:dev").texts[:64]
    plain, tfidf = Predictor(plain_path), Predictor(tfidf_path)
    base = tfidf.model.text_bases[0][1]
    base_texts = [text_of_words(tfidf.model.word_encoders[0].words(t)) for t in texts]
    runs = {"plain stack": lambda: plain.model.predict_proba(texts),
            "stack with the TF-IDF base": lambda: tfidf.model.predict_proba(texts),
            "TF-IDF base alone": lambda: base.logits(base_texts)}
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts) * 1000:.0f} ms for {len(texts)} texts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("words")
    sub.add_parser("union")
    sub.add_parser("alone").add_argument("recipe")
    p = sub.add_parser("latency")
    p.add_argument("plain")
    p.add_argument("tfidf")
    p.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.what == "words":
        words_vs_raw()
    elif args.what == "union":
        union()
    elif args.what == "alone":
        alone(args.recipe)
    else:
        latency(args.plain, args.tfidf, args.repeats)


if __name__ == "__main__":
    main()
