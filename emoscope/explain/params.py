"""Declared parameters of the explanation methods: what each takes, checked in one place.

Each method declares its parameters as :class:`ParamSpec` (name, type, default, help, and a
range or a set of choices); :func:`check_value` coerces and validates one value against its
spec, with errors that name the method and the parameter. A range bound or a choice list that
depends on the loaded model (an encoder's name, its number of layers) is a callable taking the
:class:`~emoscope.explain.model.ExplainModel`; it is checked when a model is at hand.

:class:`Widget` says how the Explain page shows a parameter (label, where the page starts,
offered values); a spec without one keeps its default on the page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Union

from emoscope.errors import InputError
from emoscope.explain.model import ExplainModel
from emoscope.models.runtime import PRECISIONS

Bound = Union[int, float, Callable[["ExplainModel"], Union[int, float, None]], None]
Choices = Union[Sequence[Any], Callable[["ExplainModel"], Sequence[Any]], None]
TYPES = (int, float, bool, str)
_INT = re.compile(r"[+-]?\d+")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class Widget:
    """How the Explain page shows a parameter.

    ``value``: where the page starts when that differs from the spec's default (a cheaper
    start); ``presets``: the values a select slider offers; ``offered``: the choices the page
    offers when fewer than the spec accepts (a list, or a callable taking the ExplainModel);
    ``radio``: a choice as horizontal radio buttons instead of a select box; ``only_if``: shown
    only while the parameters named there hold those values (the default applies otherwise).
    """

    label: str = ""
    value: Any = None
    presets: tuple[Any, ...] = ()
    offered: Choices = None
    radio: bool = False
    only_if: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of an explanation method.

    ``type``: ``int``, ``float``, ``bool`` or ``str``; ``min``/``max``: inclusive bounds of a
    number; ``choices``: the values allowed; ``words``: strings accepted besides numbers
    (``"mean"`` for an attention head); ``widget``: how the Explain page shows it (None: not
    shown, the default is used).
    """

    name: str
    type: type
    default: Any
    help: str
    min: Bound = None
    max: Bound = None
    choices: Choices = None
    words: tuple[str, ...] = ()
    widget: Widget | None = Widget()

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise TypeError(f"parameter {self.name}: type must be one of int, float, bool, str, not {self.type!r}")

    @property
    def label(self) -> str:
        return (self.widget.label if self.widget else "") or self.name


def resolve(value: Any, model: ExplainModel | None) -> Any:
    """A bound or choice list, called on the model when it depends on it (None without a model)."""
    if callable(value):
        return None if model is None else value(model)
    return value


def check_value(method: str, spec: ParamSpec, value: Any, model: ExplainModel | None = None) -> Any:
    """``value`` coerced to ``spec``'s type and checked against its range and choices.

    Coerced as the methods always read them: an integral float or a string of digits is an
    int (``--head 3``), ``"true"``/``"false"`` (and yes/no, on/off, 1/0) a bool, any number
    a float. The model-dependent bounds and choices are checked only when ``model`` is given.
    """
    if isinstance(value, str) and value in spec.words:
        return value
    value = _coerce(method, spec, value)
    choices = resolve(spec.choices, model)
    if choices is not None and value not in choices:
        raise InputError(f"{method}: unknown {spec.name} '{value}': {spec.name} must be one of "
                         f"{', '.join(map(str, choices))}")
    low, high = resolve(spec.min, model), resolve(spec.max, model)
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputError(f"{method}: {spec.name} must be {_range(low, high)}, got {value}")
    return value


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"in {low}..{high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def _coerce(method: str, spec: ParamSpec, value: Any) -> Any:
    convert = {int: _as_int, float: _as_float, bool: _as_bool, str: _as_str}[spec.type]
    coerced = convert(value)
    if coerced is None:
        also = "".join(f" or '{w}'" for w in spec.words)
        raise InputError(f"{method}: {spec.name} must be {_TYPE_WORDS[spec.type]}{also}, got {value!r}")
    return coerced


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    return float(value) if isinstance(value, Real) and math.isfinite(value) else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, Integral) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def check_specs(method: str, specs: Sequence[ParamSpec]) -> None:
    """A method's declared parameters: distinct names, and each default passes its own spec."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{method}: parameter names repeat: {names}")
    for spec in specs:
        try:
            ok = check_value(method, spec, spec.default) == spec.default
        except InputError as exc:
            raise ValueError(f"{method}: the default of {spec.name} ({spec.default!r}) fails its own spec: {exc}") from exc
        if not ok:
            raise ValueError(f"{method}: the default of {spec.name} ({spec.default!r}) is not of its type")


PRECISION_HELP = ("auto: bf16 matrix products where the hardware has them (AMX CPUs, bf16 GPUs), 2-3x faster; "
                  "fp32: exactly as predictions run. The probabilities shown are always fp32.")


def precision_spec() -> ParamSpec:
    """The ``precision`` parameter LIME and IG share (the page offers auto and fp32)."""
    return ParamSpec("precision", str, "auto", PRECISION_HELP, choices=PRECISIONS,
                     widget=Widget("Precision", offered=("auto", "fp32"), radio=True))
