"""A recipe's raw TOML/JSON tables turned into its typed, validated dataclasses.

:func:`build` checks a table's keys against a dataclass's fields (an unknown key is an error that
lists the known ones) and each value against the field's type hint, then constructs it, so every
section's own ``__post_init__`` checks run; :func:`typed` is the one value check;
:func:`require_finite` and :func:`check_seed` are checks the sections share.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from emoscope.errors import ConfigError

__all__ = ["SEED_LIMIT", "build", "check_seed", "reject_unknown", "require_finite", "typed"]

SEED_LIMIT = 2**32  # seeds are whole numbers in [0, 2^32): NumPy's generators take no others


def require_finite(section: Any, where: str) -> None:
    """``ConfigError`` for a float field that is inf or NaN (TOML has both; no option means either)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.{f.name} must be a finite number, got {value}")


def check_seed(seed: Any, where: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{where} must be a whole number from 0 to {SEED_LIMIT - 1}, got {seed!r}")


def reject_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    reject_unknown(raw, set(fields), where)
    hints = typing.get_type_hints(cls)
    values = {name: typed(value, hints[name], f"{where}.{name}") for name, value in raw.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(str(exc)) from exc


def typed(value: Any, hint: Any, where: str) -> Any:
    """Check a raw value against a simple type hint (str, int, float, bool, X | None)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if (typing.get_origin(option) is tuple and isinstance(value, (list, tuple))
                and all(isinstance(v, str) for v in value)):
            return tuple(value)
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (str, bool) and isinstance(value, option):
            return value
    names = " or ".join("a list of strings" if typing.get_origin(o) is tuple else getattr(o, "__name__", str(o))
                        for o in options)
    raise ConfigError(f"{where}: expected {names}, got {value!r}")
