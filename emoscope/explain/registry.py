"""The method registry and the one entry point, :func:`explain` (and :func:`explain_cached`).

A method registers with :func:`register_method`, declaring its parameters as
:class:`~emoscope.explain.params.ParamSpec`; :func:`resolve_params` fills in the defaults and
checks every value against its spec, so the CLI, the Explain page (which builds its widgets
from the same specs) and library callers get the same errors. Methods report progress with
:func:`report_progress`.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emoscope.errors import InputError
from emoscope.explain.coverage import coverage
from emoscope.explain.model import ExplainModel, as_explain_model
from emoscope.explain.params import ParamSpec, check_specs, check_value
from emoscope.explain.results import Explanation, LabelExplanation
from emoscope.text import MAX_CHARS, check_text, prepare_words

MAX_EXPLAIN_CHARS = MAX_CHARS

Method = Callable[[ExplainModel, str, list[int], dict[str, Any]], tuple[np.ndarray, dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True)
class RegisteredMethod:
    """A method, its declared parameters (in the order its resolved parameters keep), the title
    the page shows and the order the page lays its widgets out in (default: the specs' order)."""

    name: str
    run: Method
    params: tuple[ParamSpec, ...]
    title: str
    page_order: tuple[str, ...] = ()

    @property
    def defaults(self) -> dict[str, Any]:
        return {s.name: s.default for s in self.params}

    def spec(self, name: str) -> ParamSpec:
        return next(s for s in self.params if s.name == name)

    def page_specs(self) -> list[ParamSpec]:
        """The parameters in the page's order."""
        order = list(self.page_order) + [s.name for s in self.params if s.name not in self.page_order]
        return [self.spec(name) for name in order]


METHODS: dict[str, RegisteredMethod] = {}


def register_method(name: str, *params: ParamSpec, title: str | None = None,
                    page_order: Sequence[str] = ()) -> Callable[[Method], Method]:
    """Register an explainer: ``fn(model, text, label_indices, params) -> (scores [m, n_words],
    diagnostics, extra)`` with scores per word of the original text; ``params`` declares every
    parameter it takes (``fn`` receives them resolved: defaults filled in, values checked)."""
    check_specs(name, params)
    unknown = sorted(set(page_order) - {p.name for p in params})
    if unknown:
        raise ValueError(f"{name}: page_order names no parameter {', '.join(unknown)}")

    def add(fn: Method) -> Method:
        METHODS[name] = RegisteredMethod(name, fn, tuple(params), title or name, tuple(page_order))
        return fn
    return add


def method_info(method: str) -> RegisteredMethod:
    """The registered method called ``method`` (an InputError naming the choices if none)."""
    if method not in METHODS:
        raise InputError(f"unknown explanation method '{method}'; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[method]


def resolve_params(method: str, params: dict[str, Any] | None, model: Any = None) -> dict[str, Any]:
    """``params`` checked against ``method``'s specs, with every default filled in, in the
    specs' order. Bounds and choices that depend on the model are checked when ``model`` is given."""
    info = method_info(method)
    params = dict(params or {})
    unknown = sorted(set(params) - set(info.defaults))
    if unknown:
        raise InputError(f"{method} takes no parameter(s) {', '.join(unknown)}; it takes {', '.join(sorted(info.defaults))}")
    model = None if model is None else as_explain_model(model)
    return {s.name: check_value(method, s, params.get(s.name, s.default), model) for s in info.params}


def parse_param(method: str, name: str, value: Any) -> Any:
    """One value (a command-line string, say) coerced and checked against its spec."""
    return check_value(method, method_info(method).spec(name), value)


_PROGRESS: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar("emoscope_explain_progress",
                                                                                          default=None)


def report_progress(fraction: float) -> None:
    """Methods call this as they go (0..1); :func:`explain`'s ``on_progress`` receives it."""
    callback = _PROGRESS.get()
    if callback is not None:
        callback(min(1.0, max(0.0, float(fraction))))


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InputError(f"the text to explain is {type(text).__name__}, not a string")
    if not text.strip():
        raise InputError("the text to explain is empty: type a sentence first")
    if len(text) > MAX_EXPLAIN_CHARS:
        raise InputError(f"the text has {len(text):,} characters; explanations take at most {MAX_EXPLAIN_CHARS:,}")
    return check_text(text, "the text to explain")


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


def explain(model: Any, text: str, method: str = "ig", labels: Sequence[str] | str | None = None,
            params: dict[str, Any] | None = None, on_progress: Callable[[float], None] | None = None) -> Explanation:
    """Explain ``text`` for ``labels`` (default: all) with ``method`` (``lime``, ``attention``, ``ig``).

    ``on_progress(fraction)`` is called as the method goes (LIME per batch of samples, IG per
    label per step batch), e.g. to drive a progress bar."""
    model = as_explain_model(model)
    text = _check_text(text)
    params = resolve_params(method, params, model)
    indices = _label_indices(model, labels)
    started = time.perf_counter()
    words = prepare_words(text, model.normalizer)[0]
    probs = model.predict_texts([text])[0]
    token = _PROGRESS.set(on_progress)
    try:
        scores, diagnostics, extra = METHODS[method].run(model, text, indices, params)
    finally:
        _PROGRESS.reset(token)
    if on_progress is not None:
        on_progress(1.0)
    runtime = time.perf_counter() - started
    diagnostics = {**diagnostics, **coverage(model, method)}  # what the scores cover (text bases)
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
    resolved = resolve_params(method, params, model)
    key = _cache_key(model, text, method, labels, resolved)
    hit = cached_explanation(model, text, method, labels, resolved)
    if hit is not None:
        return hit
    result = explain(model, text, method, labels, resolved, on_progress)
    with _CACHE_LOCK:
        _CACHE[key] = result
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


def _cache_key(model: ExplainModel, text: str, method: str, labels, resolved: dict[str, Any]) -> tuple:
    return (model.cache_key, text, method, tuple(_label_indices(model, labels)), json.dumps(resolved, sort_keys=True))


def cached_explanation(model: Any, text: str, method: str = "ig", labels: Sequence[str] | str | None = None,
                       params: dict[str, Any] | None = None) -> Explanation | None:
    """What :func:`explain_cached` would return without computing anything, or None when it would
    compute (the app queues expensive work only then)."""
    model = as_explain_model(model)
    key = _cache_key(model, text, method, labels, resolve_params(method, params, model))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    return None
