"""A recipe as TOML again: the inverse of ``config.load_config`` for the dict a bundle records.

``manifest.config`` is ``RunConfig.to_dict()``: scalars, lists, nested sections and the
``[[encoders]]`` list of tables. The model card shows it as a recipe a user can train again;
Python's ``tomllib`` reads but does not write, and this small writer keeps the card free of a
new dependency. TOML has no null, so unset (``None``) values are left out, which is what a
recipe that never set them says.
"""

from __future__ import annotations

import json
import re
from typing import Any


def recipe_toml(config: dict[str, Any]) -> str:
    """The recipe a bundle recorded (``manifest.config``) as TOML; unset (null) values are left out."""
    scalars = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in config.items()
               if v is not None and not isinstance(v, dict) and not _is_table_list(v)]
    out = ["\n".join(scalars)] if scalars else []
    for key, value in config.items():
        if isinstance(value, dict):
            out.append(_toml_table(f"[{_toml_key(key)}]", value))
        elif _is_table_list(value):
            out += [_toml_table(f"[[{_toml_key(key)}]]", item) for item in value]
    return "\n\n".join(out) + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_table(header: str, values: dict[str, Any]) -> str:
    return "\n".join([header] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items() if v is not None])


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    # JSON's string escapes are TOML's basic-string escapes; TOML also refuses a raw DEL.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")
