"""LIME (Ribeiro et al., 2016) over the project's own words, progressive.

The ``lime`` package's text explainer with ``split_expression`` = :func:`emoscope.text.segment_words`,
``bow=False`` (each occurrence its own feature) and removal by deletion; ``seed`` fixes the
samples. All perturbations are drawn up front exactly as ``LimeTextExplainer.explain_instance``
draws them (the same random calls in the same order), and every label is fit on that one sample
set with LIME's own ``LimeBase``, so the result is the one ``explain_instance`` gives.

The perturbed texts are scored sorted by length in chunks of ``4 * batch_size`` (each chunk
through the model in batches of ``batch_size``, memory bounded by it): the same batches as a run
that never streams, so the final scores are bit for bit the same. Chunks go longest first (the
samples that remove fewest words, which LIME's distance kernel weighs most). When estimates are
wanted (:func:`~emoscope.explain.registry.estimates_wanted`), the first few samples (random
draws, so an unbiased preview) are scored first in small batches of their own: each gives an
estimate within about a second; the preview costs ~1/16 of the samples more, its scores stand
in for those samples until their chunk is scored, and a run that does not stream skips it.
Each estimate refits the local models on the samples scored so far.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoscope.explain.model import ExplainModel
from emoscope.explain.params import ParamSpec, Widget, precision_spec
from emoscope.explain.registry import Estimate, estimates_wanted, register_method, report_progress
from emoscope.models import resolve_precision
from emoscope.text import segment_words

PARAMS = (
    ParamSpec("samples", int, 1000, "perturbed texts the local linear model is fit on (more: steadier, slower)",
              min=10, widget=Widget("Samples", value=500, presets=(100, 250, 500, 1000, 2000, 5000))),
    ParamSpec("seed", int, 0, "random seed of the perturbations (the same seed gives the same scores)",
              min=0, max=2**32 - 1, widget=Widget("Seed")),
    ParamSpec("batch_size", int, 64, "perturbed texts per model pass (bounds the memory)", min=1, widget=None),
    ParamSpec("top_k", int, 10, "words listed as each label's top words in the JSON", min=0, widget=None),
    precision_spec(),
)
PREVIEW_BATCH = 16  # perturbed texts per preview pass: the first estimate comes after one
PREVIEW_SHARE = 16  # the preview scores about the first samples / PREVIEW_SHARE samples (at least one pass)


def neighbourhood(explainer: Any, text: str, samples: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """LIME's perturbations of ``text`` as ``explain_instance`` draws them: the 0/1 word masks
    ``[samples, words]`` (row 0 the text itself), the perturbed texts and their cosine distances
    to the text (x 100)."""
    import scipy.sparse
    from lime.lime_text import IndexedString  # third-party, loaded only when LIME runs
    from sklearn.metrics.pairwise import pairwise_distances

    indexed = IndexedString(text, bow=explainer.bow, split_expression=explainer.split_expression,
                            mask_string=explainer.mask_string)
    doc_size = indexed.num_words()
    sizes = explainer.random_state.randint(1, doc_size + 1, samples - 1)
    data = np.ones((samples, doc_size))
    texts = [indexed.raw_string()]
    for i, size in enumerate(sizes, start=1):
        inactive = explainer.random_state.choice(range(doc_size), size, replace=False)
        data[i, inactive] = 0
        texts.append(indexed.inverse_removing(inactive))
    sparse = scipy.sparse.csr_matrix(data)
    return data, texts, pairwise_distances(sparse, sparse[0], metric="cosine").ravel() * 100


def local_fit(model: ExplainModel, explainer: Any, data: np.ndarray, probs: np.ndarray, distances: np.ndarray,
              indices: list[int], n_words: int, precision: str) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Each label's local linear model on these samples (row 0 the text itself): scores per word."""
    scores = np.zeros((len(indices), n_words))
    score = 0.0
    for r, j in enumerate(indices):
        _, weights, score, _ = explainer.base.explain_instance_with_data(
            data, probs, distances, j, max(n_words, 1), model_regressor=None, feature_selection=explainer.feature_selection)
        for feature, weight in weights:
            scores[r, feature] = weight
    # lime keeps one score per explanation, the last label's r² (explain_instance overwrites it per label);
    # reported as it always was, so explanations stay identical to earlier releases
    diagnostics = {"model_calls": len(data), "precision": precision,
                   "local_fit_r2": {model.labels[j]: float(score) for j in indices}}
    return scores, diagnostics, {}


@register_method("lime", *PARAMS, title="LIME")
def lime_method(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    from lime.lime_text import LimeTextExplainer  # third-party, loaded only when LIME runs

    precision = resolve_precision(model.device, str(params["precision"]))
    n_words, samples, batch_size = len(segment_words(text)), int(params["samples"]), int(params["batch_size"])
    explainer = LimeTextExplainer(class_names=model.labels, split_expression=lambda s: [w.text for w in segment_words(s)],
                                  bow=False, mask_string="", random_state=int(params["seed"]))
    data, texts, distances = neighbourhood(explainer, text, samples)
    probs = np.zeros((samples, len(model.labels)), dtype=np.float32)
    scored = np.zeros(samples, dtype=bool)

    def estimate() -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
        rows = np.flatnonzero(scored)  # ascending: row 0, the text itself, first as LimeBase expects
        result = local_fit(model, explainer, data[rows], probs[rows], distances[rows], indices, n_words, precision)
        result[1]["model_calls"] = int(calls)
        return result

    preview = min(samples, PREVIEW_BATCH * max(1, samples // (PREVIEW_SHARE * PREVIEW_BATCH))) if estimates_wanted() else 0
    work, calls = preview + samples, 0
    for start in range(0, preview, PREVIEW_BATCH):  # random draws: an unbiased first look
        idx = np.arange(start, min(preview, start + PREVIEW_BATCH))
        probs[idx] = model.predict_texts([texts[i] for i in idx], PREVIEW_BATCH, precision)
        scored[idx], calls = True, calls + len(idx)
        report_progress(0.95 * calls / work)
        yield Estimate(int(scored.sum()), samples, "samples", estimate)
    # the batches of a run that never streams: sorted by length over all samples (so batches pad
    # little), a few batches per chunk (so progress can be reported), longest chunk first
    order = np.argsort([len(t) for t in texts], stable=True)
    chunk = 4 * batch_size
    starts = list(range(0, samples, chunk))[::-1]
    for n, start in enumerate(starts):
        idx = order[start:start + chunk]
        probs[idx] = model.predict_texts([texts[i] for i in idx], batch_size, precision)
        scored[idx], calls = True, calls + len(idx)
        report_progress(0.95 * calls / work)
        if n < len(starts) - 1:
            yield Estimate(int(scored.sum()), samples, "samples", estimate)
    return local_fit(model, explainer, data, probs, distances, indices, n_words, precision)
