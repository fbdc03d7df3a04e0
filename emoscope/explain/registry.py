"""The method registry and the one entry point, :func:`explain` (and :func:`explain_cached`).

A method registers with :func:`register_method`, declaring its parameters as
:class:`~emoscope.explain.params.ParamSpec`; :func:`resolve_params` fills in the defaults and
checks every value against its spec, so the CLI, the Explain page (which builds its widgets
from the same specs) and library callers get the same errors. Methods report progress with
:func:`report_progress`.

Progressive methods (LIME, exact IG) are generators: they yield an :class:`Estimate` as samples
or steps arrive (how far they are, and a function computing the estimate from what they have
so far, called only when someone wants it, before the method goes on) and return their final
result. :func:`explain_progressive` yields each estimate as an :class:`Explanation` marked
``partial``, then the final one; :func:`explain` takes ``on_partial`` and ``stop`` for the same.
Stopping keeps the estimate of what has been computed, marked partial. Whether estimates are
wanted at all (:func:`estimates_wanted`) lets a method skip the work only they need, so a run
without streaming is exactly what it was, and a streamed run ends on the same final result.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
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

MODEL_PROBABILITIES = "model_probabilities"  # a method whose forward pass is the model's prediction returns it in extra

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


_ESTIMATES: contextvars.ContextVar[bool] = contextvars.ContextVar("emoscope_explain_estimates", default=False)


def estimates_wanted() -> bool:
    """Whether the caller of the running method wants estimates (streams them, or may stop it):
    a method skips the work only estimates need (LIME's preview, IG's coarse pass) when not."""
    return _ESTIMATES.get()


@dataclass(frozen=True)
class Estimate:
    """What a progressive method yields: ``done`` of ``total`` ``unit`` (samples, steps) computed,
    and ``compute()`` → (scores, diagnostics, extra) from what it has so far. The registry calls
    ``compute`` only when the estimate is wanted, before the method resumes."""

    done: int
    total: int
    unit: str
    compute: Callable[[], tuple[np.ndarray, dict[str, Any], dict[str, Any]]]


def _method_steps(info: RegisteredMethod, model: ExplainModel, text: str, indices: list[int], params: dict[str, Any],
                  on_progress: Callable[[float], None] | None, wanted: bool) -> Iterator[Any]:
    """The method's estimates as it yields them, then its final result (a generator method's return
    value, or a plain method's result). ``on_progress`` and ``wanted`` are set only while the
    method's own code runs, so nothing leaks into the caller between two estimates."""
    def step(call: Callable[[], Any]) -> Any:
        tokens = _PROGRESS.set(on_progress), _ESTIMATES.set(wanted)
        try:
            return call()
        finally:
            _ESTIMATES.reset(tokens[1])
            _PROGRESS.reset(tokens[0])

    out = step(lambda: info.run(model, text, indices, params))
    if not inspect.isgenerator(out):
        yield out
        return
    with closing(out):
        while True:
            try:
                item = step(lambda: next(out))
            except StopIteration as end:
                yield end.value
                return
            yield item


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


def _stream(model: Any, text: str, method: str, labels: Sequence[str] | str | None, params: dict[str, Any] | None,
            on_progress: Callable[[float], None] | None, wanted: bool,
            should_stop: Callable[[], bool]) -> Iterator[Explanation]:
    """The estimates (only when ``wanted``), then the final explanation; when ``should_stop()``
    holds at an estimate, that estimate (partial) is the last one."""
    model = as_explain_model(model)
    text = _check_text(text)
    params = resolve_params(method, params, model)
    indices = _label_indices(model, labels)
    started = time.perf_counter()
    words = prepare_words(text, model.normalizer)[0]
    predicted: list[np.ndarray] = []

    def probabilities(extra: dict[str, Any]) -> np.ndarray:
        """The model's probabilities for the text: those the method's own forward pass gave
        (``extra[MODEL_PROBABILITIES]``, taken out), else one prediction, made once."""
        given = extra.pop(MODEL_PROBABILITIES, None)
        if not predicted:
            predicted.append(np.asarray(given) if given is not None else model.predict_texts([text])[0])
        return predicted[0]

    def build(result: tuple[np.ndarray, dict[str, Any], dict[str, Any]], estimate: Estimate | None = None) -> Explanation:
        scores, diagnostics, extra = result
        extra = dict(extra)
        probs = probabilities(extra)
        diagnostics = {**diagnostics, **coverage(model, method)}  # what the scores cover (text bases)
        per_label = {model.labels[j]: LabelExplanation(model.labels[j], float(probs[j]), [float(x) for x in scores[r]])
                     for r, j in enumerate(indices)}
        progress = None if estimate is None else {"done": estimate.done, "total": estimate.total, "unit": estimate.unit}
        return Explanation(text, words, method, params, per_label, time.perf_counter() - started, diagnostics, extra,
                           partial=estimate is not None, progress=progress)

    for item in _method_steps(METHODS[method], model, text, indices, params, on_progress, wanted):
        if not isinstance(item, Estimate):
            if on_progress is not None:
                on_progress(1.0)
            yield build(item)
        elif should_stop():
            yield build(item.compute(), item)
            return
        elif wanted:
            yield build(item.compute(), item)


def _stop_check(stop: threading.Event | Callable[[], bool] | None) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    return stop.is_set if hasattr(stop, "is_set") else stop


def explain(model: Any, text: str, method: str = "ig", labels: Sequence[str] | str | None = None,
            params: dict[str, Any] | None = None, on_progress: Callable[[float], None] | None = None,
            on_partial: Callable[[Explanation], bool | None] | None = None,
            stop: threading.Event | Callable[[], bool] | None = None) -> Explanation:
    """Explain ``text`` for ``labels`` (default: all) with ``method`` (``lime``, ``attention``, ``ig``, ...).

    ``on_progress(fraction)`` is called as the method goes (LIME per batch of samples, IG per
    label per step batch), e.g. to drive a progress bar. ``on_partial(explanation)`` receives
    each estimate of a progressive method (LIME, IG) as it arrives, marked ``partial``; returning
    False stops the run there. ``stop`` (a ``threading.Event``, or a function returning True to
    stop) is checked at each estimate. A stopped run returns its last estimate (``partial``,
    with ``progress``: samples or steps done); a run that ends is identical, bit for bit, to one
    without ``on_partial`` or ``stop``."""
    should_stop = _stop_check(stop)
    with closing(_stream(model, text, method, labels, params, on_progress, on_partial is not None or stop is not None,
                         should_stop)) as stream:
        for exp in stream:
            if exp.partial and on_partial is not None and on_partial(exp) is False:
                return exp
            last = exp
    return last


def explain_progressive(model: Any, text: str, method: str = "ig", labels: Sequence[str] | str | None = None,
                        params: dict[str, Any] | None = None, on_progress: Callable[[float], None] | None = None,
                        stop: threading.Event | Callable[[], bool] | None = None) -> Iterator[Explanation]:
    """:func:`explain` as a stream: each estimate as it arrives (``partial``), then the final
    explanation (the same as :func:`explain` gives). A method that is not progressive yields its
    result only. Leaving the loop early (or ``stop``) stops the method; what was yielded last is
    the estimate of what had been computed."""
    yield from _stream(model, text, method, labels, params, on_progress, True, _stop_check(stop))


_CACHE: OrderedDict[tuple, Explanation] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 128


def explain_cached(model: Any, text: str, method: str = "ig", labels: Sequence[str] | str | None = None,
                   params: dict[str, Any] | None = None, on_progress: Callable[[float], None] | None = None,
                   on_partial: Callable[[Explanation], bool | None] | None = None,
                   stop: threading.Event | Callable[[], bool] | None = None) -> Explanation:
    """:func:`explain`, computed once per process for the same (bundle, text, method, labels,
    parameters); a stopped (partial) result is returned but not kept."""
    model = as_explain_model(model)
    resolved = resolve_params(method, params, model)
    key = _cache_key(model, text, method, labels, resolved)
    hit = cached_explanation(model, text, method, labels, resolved)
    if hit is not None:
        return hit
    result = explain(model, text, method, labels, resolved, on_progress, on_partial, stop)
    if result.partial:
        return result
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
