"""LIME (Ribeiro et al., 2016) over the project's own words.

The ``lime`` package's text explainer with ``split_expression`` = :func:`emoscope.text.segment_words`,
``bow=False`` (each occurrence its own feature) and removal by deletion; the perturbed texts go
through the model sorted by length in batches of ``batch_size`` (memory bounded by it), a few
batches per call so progress can be reported; every label is fit on one sample set; ``seed``
fixes the samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoscope.explain.model import ExplainModel
from emoscope.explain.params import ParamSpec, Widget, precision_spec
from emoscope.explain.registry import register_method, report_progress
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


def _classifier(model: ExplainModel, batch_size: int, precision: str, calls: dict[str, int]):
    """LIME's classifier function: probabilities of the perturbed texts, reporting progress."""
    def classify(texts: list[str]) -> np.ndarray:
        calls["texts"] += len(texts)
        out = np.zeros((len(texts), len(model.labels)), dtype=np.float32)
        # sorted by length over all samples (so batches pad little), scored a few batches at a
        # time (so progress can be reported)
        order = np.argsort([len(t) for t in texts], stable=True)
        chunk = 4 * batch_size
        for start in range(0, len(texts), chunk):
            idx = order[start:start + chunk]
            out[idx] = model.predict_texts([texts[i] for i in idx], batch_size, precision)
            report_progress(0.95 * min(len(texts), start + chunk) / len(texts))
        return out
    return classify


@register_method("lime", *PARAMS, title="LIME")
def lime_method(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    from lime.lime_text import LimeTextExplainer  # third-party, loaded only when LIME runs

    precision = resolve_precision(model.device, str(params["precision"]))
    words = segment_words(text)
    explainer = LimeTextExplainer(class_names=model.labels, split_expression=lambda s: [w.text for w in segment_words(s)],
                                  bow=False, mask_string="", random_state=int(params["seed"]))
    calls = {"texts": 0}
    classify = _classifier(model, int(params["batch_size"]), precision, calls)
    exp = explainer.explain_instance(text, classify, labels=indices, num_features=max(len(words), 1),
                                     num_samples=int(params["samples"]))
    scores = np.zeros((len(indices), len(words)))
    for r, j in enumerate(indices):
        for feature, weight in exp.as_map()[j]:
            scores[r, feature] = weight
    diagnostics = {"model_calls": calls["texts"], "precision": precision,
                   "local_fit_r2": {model.labels[j]: float(exp.score[j]) if isinstance(exp.score, dict) else float(exp.score)
                                    for j in indices}}
    return scores, diagnostics, {}
