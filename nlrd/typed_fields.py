"""Plain values (as YAML gives them) checked against a dataclass's field types, before the dataclass is built.

Search spaces and the data sources they name are written by hand, so each value is checked where it is read: a
wrong type or a misspelt key raises :class:`FieldError` with the key path inside the mapping being read, and the
reader (``search.space``, ``nlrd.data.sources.DataConfig.from_mapping``) says which file or section that is.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable
from typing import Any


class FieldError(ValueError):
    """A value that does not fit.  ``key``: its dotted path (``""``: the whole mapping); ``problem``: what is
    wrong; ``allowed``: what it may be, where that is a short list."""

    def __init__(self, key: str, problem: str, allowed: Iterable[Any] | None = None) -> None:
        self.key, self.problem = key, problem
        self.allowed = None if allowed is None else tuple(allowed)
        message = problem
        if self.allowed is not None:
            message += f". Allowed: {', '.join(map(str, self.allowed))}"
        super().__init__(message)


def join_key(prefix: str, name: Any) -> str:
    """``prefix.name``, or ``name`` at the top level."""
    return f"{prefix}.{name}" if prefix else str(name)


def field_types(cls: type, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The type of each of a dataclass's fields, in their order, leaving out ``exclude``."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in skip}


def mapping(key: str, value: Any) -> dict[str, Any]:
    """``value`` as a mapping; a left-out (null) section is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(key, f"must be a mapping of keys to values, got {type(value).__name__} {value!r}")
    return value


def known_keys(key: str, value: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse a key outside ``allowed``, with the closest allowed one as a hint: most are typos."""
    allowed = list(allowed)
    for name in value:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise FieldError(join_key(key, name), f"unknown key{hint}", allowed)


def typed_value(key: str, hint: Any, value: Any) -> Any:
    """``value`` checked against a field's type ``hint``; tuples accept YAML lists, floats YAML's ``1e-5``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return typed_value(key, inner[0], value)
    if origin is typing.Literal:
        if value not in args:
            raise FieldError(key, f"got {value!r}", args)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FieldError(key, f"must be a list, got {value!r}")
        return tuple(typed_value(f"{key}[{i}]", args[0], item) for i, item in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise FieldError(key, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(key, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads 1e-5 (no dot) as a string
            except ValueError:
                raise FieldError(key, f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FieldError(key, f"must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise FieldError(key, f"must be a string, got {value!r}")
        return value
    return value


def typed_fields(key: str, fields: dict[str, Any], value: Any) -> dict[str, Any]:
    """The mapping ``value``, every key one of ``fields`` (name -> type) and every value of its type."""
    value = mapping(key, value)
    known_keys(key, value, fields)
    return {name: typed_value(join_key(key, name), fields[name], item) for name, item in value.items()}
