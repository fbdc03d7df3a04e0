"""Faithfulness after ERASER (DeYoung et al., 2020), for sigmoid outputs.

Comprehensiveness = p(text) - p(text without the top words), sufficiency = p(text) - p(only the
top words), averaged over several top-k sizes; random word scores are the control, and
:func:`evaluate_methods` compares methods with it over a sample of texts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from emoscope.explain.model import as_explain_model
from emoscope.explain.registry import explain
from emoscope.explain.results import Explanation
from emoscope.text import Word

FRACTIONS = (0.1, 0.2, 0.5)


def _keep_words(words: Sequence[Word], keep: Sequence[bool]) -> str:
    return " ".join(w.text for w, k in zip(words, keep) if k)


def faithfulness(model: Any, explanation: Explanation, fractions: Sequence[float] = FRACTIONS,
                 scores: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Comprehensiveness and sufficiency (ERASER) per explained label, averaged over top-k sizes.

    ``top k`` = the ``ceil(f * n_words)`` highest-scoring words for each fraction f. A faithful
    explanation has high comprehensiveness (removing its top words lowers the probability) and
    low sufficiency (its top words alone keep it). ``scores`` overrides the explanation's scores
    (e.g. random ones, as a control).
    """
    model = as_explain_model(model)
    words = explanation.words
    n = len(words)
    texts, plan = [], []
    for label, exp in explanation.labels.items():
        s = np.asarray(scores[label] if scores is not None else exp.scores, dtype=float)
        order = np.argsort(-s, stable=True)
        for f in fractions:
            k = max(1, int(np.ceil(f * n)))
            top = np.zeros(n, dtype=bool)
            top[order[:k]] = True
            texts += [_keep_words(words, ~top), _keep_words(words, top)]
            plan.append(label)
    probs = model.predict_texts(texts)
    out: dict[str, dict[str, list[float]]] = {}
    for i, label in enumerate(plan):
        j = model.labels.index(label)
        p = explanation.labels[label].probability
        row = out.setdefault(label, {"comprehensiveness": [], "sufficiency": []})
        row["comprehensiveness"].append(p - float(probs[2 * i, j]))
        row["sufficiency"].append(p - float(probs[2 * i + 1, j]))
    return {label: {k: float(np.mean(v)) for k, v in row.items()} for label, row in out.items()}


def random_scores(explanation: Explanation, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {label: rng.standard_normal(len(explanation.words)) for label in explanation.labels}


def _add(row: dict[str, list[float]], faith: dict[str, dict[str, float]]) -> None:
    for f in faith.values():
        row["comprehensiveness"].append(f["comprehensiveness"])
        row["sufficiency"].append(f["sufficiency"])


def evaluate_methods(model: Any, texts: Sequence[str], methods: Sequence[str],
                     params: dict[str, dict[str, Any]] | None = None, seed: int = 0,
                     log: Callable[[str], None] = print,
                     on_text: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Mean comprehensiveness and sufficiency of each method (and a random control) over texts.

    Each text is explained for its predicted labels (its most probable label if none is
    predicted); the random control scores the same (text, label) pairs with random words.
    ``on_text(texts_done, summary_so_far)`` is called after each text (e.g. to save a long run
    as it goes); the summary of all texts is returned.
    """
    model = as_explain_model(model)
    rows: dict[str, dict[str, list[float]]] = {m: {"comprehensiveness": [], "sufficiency": [], "seconds": []}
                                                for m in [*methods, "random"]}
    for i, text in enumerate(texts):
        probs = model.predict_texts([text])[0]
        chosen = [model.labels[j] for j in np.flatnonzero(probs >= model.thresholds)] or [model.labels[int(probs.argmax())]]
        for method in methods:
            exp = explain(model, text, method, chosen, (params or {}).get(method))
            _add(rows[method], faithfulness(model, exp))
            rows[method]["seconds"].append(exp.runtime_s)
        _add(rows["random"], faithfulness(model, exp, scores=random_scores(exp, seed + i)))
        log(f"[explain --evaluate] {i + 1}/{len(texts)}")
        if on_text is not None and i + 1 < len(texts):
            on_text(i + 1, _summary(rows, methods, seed))
    return _summary(rows, methods, seed)


def _summary(rows: dict[str, dict[str, list[float]]], methods: Sequence[str], seed: int) -> dict[str, Any]:
    out = {m: {k: (float(np.mean(v)) if v else None) for k, v in r.items()} | {"pairs": len(r["comprehensiveness"])}
           for m, r in rows.items()}
    for method in methods:  # paired with the random control on the same (text, label) pairs
        for measure, better in (("comprehensiveness", 1.0), ("sufficiency", -1.0)):
            diff = better * (np.asarray(rows[method][measure]) - np.asarray(rows["random"][measure]))
            out[method][f"{measure}_vs_random"] = paired_summary(diff, seed)
    return out


def paired_summary(diff: np.ndarray, seed: int = 0, resamples: int = 2000) -> dict[str, float | None]:
    """Mean of paired differences (positive = better than the control), its 95 % bootstrap
    interval, and the share of pairs where the method did better."""
    diff = np.asarray(diff, dtype=float)
    if diff.size == 0:
        return {"mean": None, "ci95_low": None, "ci95_high": None, "win_rate": None}
    means = np.random.default_rng(seed).choice(diff, size=(resamples, diff.size), replace=True).mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95_low": float(low), "ci95_high": float(high),
            "win_rate": float((diff > 0).mean())}
