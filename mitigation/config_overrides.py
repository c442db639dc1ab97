"""A method's config dataclass from `key=value` strings: field lookup, type conversion, clear errors.

The command-line training path parses configs with TRL's `TrlParser` (YAML + flags); this module serves the
callers that hold plain strings (`scripts/evaluate.py --method-arg k=v`, Python callers of the registry) and the
check of values a YAML file set. Supported field types: int, float, bool, str, `Literal[...]` and `X | None`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

_TRUE = {"true", "yes", "y", "t", "1", "on"}
_FALSE = {"false", "no", "n", "f", "0", "off"}
_NONE = {"none", "null"}


class ConfigError(ValueError):
    """An unknown config key or a value of the wrong type; the message names the key and the valid choices."""


def field_types(config_class: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config dataclass (init fields only)."""
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_class) if f.init}


def unknown_key_message(key: str, config_class: type, valid: list[str]) -> str:
    """`unknown key 'x' for ResaConfig; did you mean 'y'? valid keys: ...` (one line)."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown key {key!r} for {config_class.__name__}{hint} valid keys: {', '.join(valid)}"


def build_config(config_class: type, overrides: dict[str, Any]):
    """`config_class(**converted)`: string values converted to each field's type, other values type-checked.

    Raises:
        ConfigError: a key that is not a field, or a value that does not fit the field's type.
    """
    types_by_name = field_types(config_class)
    kwargs = {}
    for key, value in overrides.items():
        if key not in types_by_name:
            raise ConfigError(unknown_key_message(key, config_class, sorted(types_by_name)))
        kwargs[key] = convert(key, value, types_by_name[key]) if isinstance(value, str) else value
    check_values(config_class, kwargs)
    return config_class(**kwargs)


def check_values(config_class: type, values: dict[str, Any]) -> None:
    """Raise ConfigError for a value (e.g. read from YAML) that does not fit its field's type."""
    types_by_name = field_types(config_class)
    for key, value in values.items():
        if key in types_by_name and not _fits(value, types_by_name[key]):
            raise ConfigError(f"{key} expects {type_name(types_by_name[key])}, got {value!r}")


def convert(key: str, raw: str, annotation: Any):
    """The string `raw` as a value of type `annotation` (the field `key` names it in the error)."""
    inner, optional = _unwrap_optional(annotation)
    if optional and raw.strip().lower() in _NONE:
        return None
    try:
        return _convert(raw, inner)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} expects {type_name(annotation)}, got {raw!r}") from None


def type_name(annotation: Any) -> str:
    """A readable name: int, float, bool (true/false), str, one of 'a', 'b', int or None."""
    inner, optional = _unwrap_optional(annotation)
    if typing.get_origin(inner) is typing.Literal:
        name = "one of " + ", ".join(repr(c) for c in typing.get_args(inner))
    elif inner is bool:
        name = "bool (true/false)"
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} or None" if optional else name


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _convert(raw: str, annotation: Any):
    if typing.get_origin(annotation) is typing.Literal:
        for choice in typing.get_args(annotation):
            if str(choice) == raw:
                return choice
        raise ValueError(raw)
    if annotation is bool:
        word = raw.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ValueError(raw)
    if annotation in (int, float, str):
        return annotation(raw)
    raise TypeError(f"unsupported field type {annotation!r}")


def _fits(value: Any, annotation: Any) -> bool:
    inner, optional = _unwrap_optional(annotation)
    if value is None:
        return optional
    if typing.get_origin(inner) is typing.Literal:
        return value in typing.get_args(inner)
    if inner is float:
        return isinstance(value, int | float) and not isinstance(value, bool)  # YAML `lr: 1` is a float field's 1.0
    if inner is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if inner in (bool, str):
        return isinstance(value, inner)
    return True  # types this module does not convert: left to the dataclass
