"""Word-level explanations of EmoScope's own multi-label models: LIME, attention, Integrated Gradients.

One interface for every method and both bundle kinds (one fine-tuned encoder, or a stacked
ensemble): ``explain(model, text, method, labels, params)`` returns an :class:`Explanation`
holding, for each requested label, one score per word of the *original* text (with character
offsets, so the text can be highlighted exactly as typed), the label's probability, the
method and its parameters, the runtime and quality diagnostics. Words are the project's own
segmentation (``emoscope.text.segment_words``): diacritised Arabic stays whole, an emoji is a
word, and every encoder of a stack maps its sub-words onto the same words.

* **lime**: the ``lime`` package's text explainer with that segmentation, perturbed texts
  scored in batches (bounded memory), a sample count, a seed, all labels from one sample set.
* **attention**: per base encoder, one layer and head, heads averaged, or attention rollout
  (Abnar & Zuidema, 2020), mapped from sub-words to words; eager-attention copies of the
  encoders are loaded only when this method is used, so the shared model is never touched.
* **ig**: Integrated Gradients (Sundararajan et al., 2017) through the whole model at once:
  every encoder's word embeddings are interpolated from padding-embedding baselines together,
  the gradients of all requested labels come from one forward pass per step batch, and the
  attributions are summed over the hidden dimension, over each word's sub-words and over the
  encoders. The steps and weights are Captum's Gauss-Legendre rule, and the result equals
  Captum's ``IntegratedGradients`` label by label (tested); the completeness gap is reported.

Faithfulness (``faithfulness``) follows ERASER (DeYoung et al., 2020) for sigmoid outputs:
comprehensiveness = p(text) - p(text without the top words), sufficiency = p(text) -
p(only the top words), averaged over several top-k sizes.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from emoscope.errors import InputError
from emoscope.render import render_html  # noqa: F401  (re-exported)
from emoscope.text import MAX_CHARS, Word, prepare_words
from emoscope.words import token_word_matrix

MAX_EXPLAIN_CHARS = MAX_CHARS


# --- results -------------------------------------------------------------------------------------


@dataclass
class LabelExplanation:
    label: str
    probability: float
    scores: list[float]  # one per word of Explanation.words

    def top(self, k: int, words: Sequence[Word]) -> list[tuple[str, float]]:
        order = np.argsort(-np.asarray(self.scores), stable=True)[:k]
        return [(words[i].text, float(self.scores[i])) for i in order]


@dataclass
class Explanation:
    """Scores per word of ``text`` for each explained label, and how they were obtained."""

    text: str
    words: list[Word]
    method: str
    params: dict[str, Any]
    labels: dict[str, LabelExplanation]
    runtime_s: float = 0.0
    diagnostics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def scores(self, label: str) -> np.ndarray:
        return np.asarray(self.labels[label].scores, dtype=float)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "words": [{"text": w.text, "start": w.start, "end": w.end} for w in self.words],
            "method": self.method,
            "params": self.params,
            "labels": {name: {"probability": e.probability, "scores": e.scores,
                              "top": e.top(int(self.params.get("top_k", 5)), self.words)}
                       for name, e in self.labels.items()},
            "runtime_s": self.runtime_s,
            "diagnostics": self.diagnostics,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Explanation:
        words = [Word(w["text"], w["start"], w["end"]) for w in raw["words"]]
        labels = {name: LabelExplanation(name, float(e["probability"]), [float(x) for x in e["scores"]])
                  for name, e in raw["labels"].items()}
        return cls(raw["text"], words, raw["method"], dict(raw["params"]), labels, float(raw.get("runtime_s", 0.0)),
                   dict(raw.get("diagnostics", {})), dict(raw.get("extra", {})))


# --- the model seen by explainers ----------------------------------------------------------------


class ExplainModel:
    """A loaded bundle (``Predictor``) as the explainers see it: its labels and thresholds, and its
    :class:`~emoscope.models.EmotionModel` (words, encoders with word maps, a differentiable
    forward from each encoder's input embeddings)."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.model = predictor.model
        self.labels: list[str] = list(predictor.labels)
        self.thresholds = np.asarray(predictor.thresholds, dtype=float)
        self.device = self.model.runtime.device
        self.names = self.model.names
        self.fine_tuned = self.model.fine_tuned
        self.encoders = self.model.encoders
        self.word_encoders = self.model.word_encoders
        self.normalizer = self.word_encoders[0].normalizer

    @property
    def cache_key(self) -> tuple[str, float]:
        path = self.predictor.path
        return str(path.resolve()), (path / "manifest.json").stat().st_mtime

    def words(self, text: str) -> tuple[list[Word], list[int], list[str]]:
        """Words of the text as typed, the original index of each word the model reads, and
        the normalised words it reads (the empty-normalising and cut-off words are not read)."""
        read = self.model.read(text)
        return read.words, read.read, read.model_words

    def batches(self, model_words: list[str]) -> list[dict[str, torch.Tensor]]:
        return self.model.to_device(self.model.encode_words([model_words])[0])

    def input_embeddings(self, batches: Sequence[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        return [enc.get_input_embeddings()(b["input_ids"]).detach() for enc, b in zip(self.encoders, batches)]

    def baselines(self, batches: Sequence[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        """Padding embeddings at every word token; special and prefix tokens keep their own."""
        out = []
        for enc, we, b in zip(self.encoders, self.word_encoders, batches):
            ids = torch.where(b["word_index"] >= 0, torch.full_like(b["input_ids"], we.pad_id), b["input_ids"])
            out.append(enc.get_input_embeddings()(ids).detach())
        return out

    def forward_embeds(self, embeds: Sequence[torch.Tensor], batches: Sequence[dict[str, torch.Tensor]],
                       n_words: int) -> torch.Tensor:
        """Probabilities ``[B, L]`` from each encoder's input embeddings ``[B, T_k, H_k]``."""
        rows = embeds[0].shape[0]
        expanded = [{k: v.expand(rows, -1) for k, v in b.items()} for b in batches]
        counts = torch.full((rows,), n_words, dtype=torch.long, device=embeds[0].device)
        logits = self.model(expanded, counts, inputs_embeds=list(embeds), for_gradients=True)
        return torch.sigmoid(logits.float())

    def predict_texts(self, texts: Sequence[str], batch_size: int | None = None,
                      precision: str | None = None) -> np.ndarray:
        """Probabilities for perturbed texts (an empty one reads as one unknown word).

        ``precision=None`` predicts exactly as ``Predictor`` does; ``auto``/``bf16``/``fp32``: see
        :func:`emoscope.models.autocast_context`."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.model.predict_proba(list(texts), batch_size=batch_size or 64, precision=precision)

    def eager_encoder(self, index: int) -> Any:
        """A copy of encoder ``index`` with eager attention, made on first use."""
        return self.model.eager_encoder(index)


def as_explain_model(model: Any) -> ExplainModel:
    return model if isinstance(model, ExplainModel) else ExplainModel(model)


# --- registry and the one entry point ------------------------------------------------------------

Method = Callable[[ExplainModel, str, list[int], dict[str, Any]], tuple[np.ndarray, dict[str, Any], dict[str, Any]]]
METHODS: dict[str, tuple[Method, dict[str, Any]]] = {}


_PROGRESS: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar("emoscope_explain_progress",
                                                                                          default=None)


def report_progress(fraction: float) -> None:
    """Methods call this as they go (0..1); :func:`explain`'s ``on_progress`` receives it."""
    callback = _PROGRESS.get()
    if callback is not None:
        callback(min(1.0, max(0.0, float(fraction))))


def register_method(name: str, **defaults: Any) -> Callable[[Method], Method]:
    """Register an explainer: ``fn(model, text, label_indices, params) -> (scores [m, n_words],
    diagnostics, extra)`` with scores per word of the original text."""
    def add(fn: Method) -> Method:
        METHODS[name] = (fn, defaults)
        return fn
    return add


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InputError(f"the text to explain is {type(text).__name__}, not a string")
    if not text.strip():
        raise InputError("the text to explain is empty: type a sentence first")
    if "\x00" in text:
        raise InputError("the text holds NUL bytes: it looks like binary data, not text")
    if len(text) > MAX_EXPLAIN_CHARS:
        raise InputError(f"the text has {len(text):,} characters; explanations take at most {MAX_EXPLAIN_CHARS:,}")
    return text


def _label_indices(model: ExplainModel, labels: Sequence[str] | str | None) -> list[int]:
    if labels is None or labels == "all":
        return list(range(len(model.labels)))
    if isinstance(labels, str):
        labels = [labels]
    unknown = [lab for lab in labels if lab not in model.labels]
    if unknown:
        raise InputError(f"unknown label(s) {', '.join(unknown)}; this model has {', '.join(model.labels)}")
    if not labels:
        raise InputError("give at least one label to explain")
    return [model.labels.index(lab) for lab in labels]


def resolve_params(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    if method not in METHODS:
        raise InputError(f"unknown explanation method '{method}'; choose one of {', '.join(sorted(METHODS))}")
    defaults = METHODS[method][1]
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise InputError(f"{method} takes no parameter(s) {', '.join(unknown)}; it takes {', '.join(sorted(defaults))}")
    return {**defaults, **params}


def explain(model: Any, text: str, method: str = "ig", labels: Sequence[str] | str | None = None,
            params: dict[str, Any] | None = None, on_progress: Callable[[float], None] | None = None) -> Explanation:
    """Explain ``text`` for ``labels`` (default: all) with ``method`` (``lime``, ``attention``, ``ig``).

    ``on_progress(fraction)`` is called as the method goes (LIME per batch of samples, IG per
    label per step batch), e.g. to drive a progress bar."""
    model = as_explain_model(model)
    text = _check_text(text)
    params = resolve_params(method, params)
    indices = _label_indices(model, labels)
    fn = METHODS[method][0]
    started = time.perf_counter()
    words = prepare_words(text, model.normalizer)[0]
    probs = model.predict_texts([text])[0]
    token = _PROGRESS.set(on_progress)
    try:
        scores, diagnostics, extra = fn(model, text, indices, params)
    finally:
        _PROGRESS.reset(token)
    if on_progress is not None:
        on_progress(1.0)
    runtime = time.perf_counter() - started
    per_label = {model.labels[j]: LabelExplanation(model.labels[j], float(probs[j]), [float(x) for x in scores[r]])
                 for r, j in enumerate(indices)}
    return Explanation(text, words, method, params, per_label, runtime, diagnostics, extra)


_CACHE: OrderedDict[tuple, Explanation] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 128


def explain_cached(model: Any, text: str, method: str = "ig", labels: Sequence[str] | str | None = None,
                   params: dict[str, Any] | None = None, on_progress: Callable[[float], None] | None = None) -> Explanation:
    """:func:`explain`, computed once per process for the same (bundle, text, method, labels, parameters)."""
    model = as_explain_model(model)
    resolved = resolve_params(method, params)
    key = (model.cache_key, text, method, tuple(_label_indices(model, labels)), json.dumps(resolved, sort_keys=True))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    result = explain(model, text, method, labels, resolved, on_progress)
    with _CACHE_LOCK:
        _CACHE[key] = result
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


# --- LIME ----------------------------------------------------------------------------------------


@register_method("lime", samples=1000, seed=0, batch_size=64, top_k=10, precision="auto")
def _lime(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    from lime.lime_text import LimeTextExplainer

    from emoscope.models import resolve_precision
    from emoscope.text import segment_words

    precision = resolve_precision(model.device, str(params["precision"]))

    words = segment_words(text)
    samples = int(params["samples"])
    if samples < 10:
        raise InputError(f"lime needs at least 10 samples, got {samples}")
    explainer = LimeTextExplainer(class_names=model.labels, split_expression=lambda s: [w.text for w in segment_words(s)],
                                  bow=False, mask_string="", random_state=int(params["seed"]))
    calls = {"texts": 0}

    batch_size = int(params["batch_size"])

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

    exp = explainer.explain_instance(text, classify, labels=indices, num_features=max(len(words), 1),
                                     num_samples=samples)
    scores = np.zeros((len(indices), len(words)))
    for r, j in enumerate(indices):
        for feature, weight in exp.as_map()[j]:
            scores[r, feature] = weight
    diagnostics = {"model_calls": calls["texts"], "precision": precision,
                   "local_fit_r2": {model.labels[j]: float(exp.score[j]) if isinstance(exp.score, dict) else float(exp.score)
                                    for j in indices}}
    return scores, diagnostics, {}


# --- attention -----------------------------------------------------------------------------------


@register_method("attention", layer=-1, head="mean", rollout=False, encoder="fine-tuned")
def _attention(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    """``encoder``: ``fine-tuned`` (the default: the encoders fine-tuned on emotions, or all when
    none was; on the dev sample its scores were more faithful than the average over all encoders,
    see docs/BENCHMARKS.md), ``all``, or one encoder's name."""
    chosen_encoder = str(params["encoder"])
    if chosen_encoder not in ("all", "fine-tuned") and chosen_encoder not in model.names:
        raise InputError(f"unknown encoder '{chosen_encoder}'; this model has {', '.join(model.names)} "
                         "(or 'fine-tuned', 'all')")
    words, read, model_words = model.words(text)
    batches = model.batches(model_words)
    per_encoder, matrices = [], {}
    if chosen_encoder == "fine-tuned":
        used = [i for i, ft in enumerate(model.fine_tuned) if ft] or list(range(len(model.names)))
    else:
        used = [i for i, n in enumerate(model.names) if chosen_encoder in ("all", n)]
    for name, encoder, batch in [(model.names[i], model.eager_encoder(i), batches[i]) for i in used]:
        with torch.inference_mode():
            out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
        att = torch.stack([a[0].float().cpu() for a in out.attentions])  # [layers, heads, T, T]
        n_layers, n_heads = att.shape[:2]
        layer, head = params["layer"], params["head"]
        if params["rollout"]:
            a = att.mean(1) + torch.eye(att.shape[-1])
            a = a / a.sum(-1, keepdim=True)
            rolled = a[0]
            for i in range(1, n_layers):
                rolled = a[i] @ rolled
            chosen = rolled
        else:
            if not -n_layers <= int(layer) < n_layers:
                raise InputError(f"{name} has {n_layers} layers; layer must be in 0..{n_layers - 1} (or -1 for the last)")
            if head == "mean":
                chosen = att[int(layer)].mean(0)
            else:
                if not 0 <= int(head) < n_heads:
                    raise InputError(f"{name} has {n_heads} heads; head must be in 0..{n_heads - 1} or 'mean'")
                chosen = att[int(layer), int(head)]
        w = token_word_matrix(batch["word_index"][0].tolist(), read, len(words))  # [T, n]
        real = batch["attention_mask"][0].cpu().float()
        # attention each word receives, averaged over the real query tokens
        received = (real @ chosen) / real.sum()
        score = received @ w
        total = score.sum()
        per_encoder.append(score / total if total > 0 else score)
        # word x word map for the chosen layer/head: rows averaged over a word's tokens, columns summed
        rows = w / w.sum(0, keepdim=True).clamp(min=1)
        matrices[name] = {"layers": n_layers, "heads": n_heads, "word_matrix": (rows.T @ chosen @ w).tolist()}
    combined = torch.stack(per_encoder).mean(0).numpy()
    scores = np.tile(combined, (len(indices), 1))
    diagnostics = {"label_specific": False, "encoders": model.names,
                   "per_encoder": {model.names[i]: s.tolist() for i, s in zip(used, per_encoder)}}
    return scores, diagnostics, {"attention": matrices}


# --- Integrated Gradients ------------------------------------------------------------------------


def ig_word_attributions(model: ExplainModel, text: str, indices: list[int], n_steps: int = 50,
                         internal_batch_size: int = 16, precision: str = "fp32") -> tuple[np.ndarray, dict[str, Any]]:
    """Integrated Gradients of each requested label's probability, per word of the original text.

    All encoders' embeddings move from baseline to input together; each step batch needs one
    forward pass for all labels, then one backward pass per label over the kept graph.
    ``precision``: the step passes run under that autocast (``bf16``: the encoders' linear layers
    in bf16, attention kernels, word pooling and the meta-learner in fp32; inputs, gradients and
    sums stay fp32). The endpoints of the
    completeness check are always fp32, so the reported delta includes any bf16 error.
    """
    from captum.attr._utils.approximation_methods import approximation_parameters

    from emoscope.models import autocast_context, resolve_precision

    precision = resolve_precision(model.device, precision)

    if n_steps < 2:
        raise InputError(f"ig needs n_steps >= 2, got {n_steps}")
    if internal_batch_size < 1:
        raise InputError(f"ig needs internal_batch_size >= 1, got {internal_batch_size}")
    words, read, model_words = model.words(text)
    batches = model.batches(model_words)
    n_words = len(model_words)
    inputs = model.input_embeddings(batches)
    bases = model.baselines(batches)
    step_sizes, alphas = approximation_parameters("gausslegendre")
    weights, points = step_sizes(n_steps), alphas(n_steps)
    m = len(indices)
    totals = [torch.zeros((m, *x.shape[1:]), device=x.device) for x in inputs]
    target = torch.as_tensor(indices, device=inputs[0].device)
    for start in range(0, n_steps, internal_batch_size):
        a = torch.as_tensor(points[start:start + internal_batch_size], dtype=inputs[0].dtype, device=inputs[0].device)
        w = torch.as_tensor(weights[start:start + internal_batch_size], dtype=inputs[0].dtype, device=inputs[0].device)
        scaled = [(b + a[:, None, None] * (x - b)).requires_grad_(True) for x, b in zip(inputs, bases)]
        with autocast_context(model.device, precision):
            probs = model.forward_embeds(scaled, batches, n_words)[:, target]  # [c, m]
        for r in range(m):
            grads = torch.autograd.grad(probs[:, r].sum(), scaled, retain_graph=r < m - 1)
            for k, g in enumerate(grads):
                totals[k][r] += (g * w[:, None, None]).sum(0)
            report_progress((start * m + len(a) * (r + 1)) / (n_steps * m))
    token_scores = []
    n_orig = len(words)
    scores = np.zeros((m, n_orig))
    for k, (x, b, batch) in enumerate(zip(inputs, bases, batches)):
        attr = ((x[0] - b[0])[None] * totals[k]).sum(-1).detach().cpu()  # [m, T]
        token_scores.append(attr)
        scores += (attr @ token_word_matrix(batch["word_index"][0].tolist(), read, n_orig)).numpy()
    with torch.inference_mode():
        p_input = model.forward_embeds(inputs, batches, n_words)[0, target].cpu().numpy()
        p_base = model.forward_embeds(bases, batches, n_words)[0, target].cpu().numpy()
    total_attr = sum(t.sum(-1) for t in token_scores).numpy()
    delta = total_attr - (p_input - p_base)
    diagnostics = {"convergence_delta": {model.labels[j]: float(d) for j, d in zip(indices, delta)},
                   "baseline_probability": {model.labels[j]: float(p) for j, p in zip(indices, p_base)},
                   "attribution_sum": {model.labels[j]: float(s) for j, s in zip(indices, total_attr)},
                   "words_read": len(read), "words": len(words), "precision": precision}
    return scores, diagnostics


@register_method("ig", n_steps=50, internal_batch_size=16, precision="auto")
def _ig(model: ExplainModel, text: str, indices: list[int], params: dict[str, Any]):
    scores, diagnostics = ig_word_attributions(model, text, indices, int(params["n_steps"]),
                                               int(params["internal_batch_size"]), str(params["precision"]))
    return scores, diagnostics, {}


# --- faithfulness --------------------------------------------------------------------------------

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


def evaluate_methods(model: Any, texts: Sequence[str], methods: Sequence[str],
                     params: dict[str, dict[str, Any]] | None = None, seed: int = 0,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Mean comprehensiveness and sufficiency of each method (and a random control) over texts.

    Each text is explained for its predicted labels (its most probable label if none is
    predicted); the random control scores the same (text, label) pairs with random words.
    """
    model = as_explain_model(model)
    rows: dict[str, dict[str, list[float]]] = {m: {"comprehensiveness": [], "sufficiency": [], "seconds": []}
                                                for m in [*methods, "random"]}
    for i, text in enumerate(texts):
        probs = model.predict_texts([text])[0]
        chosen = [model.labels[j] for j in np.flatnonzero(probs >= model.thresholds)] or [model.labels[int(probs.argmax())]]
        for method in methods:
            exp = explain(model, text, method, chosen, (params or {}).get(method))
            for label, f in faithfulness(model, exp).items():
                rows[method]["comprehensiveness"].append(f["comprehensiveness"])
                rows[method]["sufficiency"].append(f["sufficiency"])
            rows[method]["seconds"].append(exp.runtime_s)
        for label, f in faithfulness(model, exp, scores=random_scores(exp, seed + i)).items():
            rows["random"]["comprehensiveness"].append(f["comprehensiveness"])
            rows["random"]["sufficiency"].append(f["sufficiency"])
        log(f"[explain --evaluate] {i + 1}/{len(texts)}")
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


__all__ = ["Explanation", "ExplainModel", "LabelExplanation", "METHODS", "evaluate_methods", "explain", "paired_summary",
           "explain_cached", "faithfulness", "ig_word_attributions", "random_scores", "register_method", "render_html",
           "report_progress"]
