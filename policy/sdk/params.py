"""Adapter params: declared as dataclasses, validated with field-scoped errors.

An adapter declares its params as a dataclass whose fields carry type hints and a
``doc`` (use :func:`param`). :func:`parse_params` turns the raw YAML mapping into an
instance, collecting every problem as a :class:`FieldError` that names the field
path (``quotas[0].maxAmount``). YAML keys are camelCase as in Mixer; snake_case is
accepted too. Supported hints: str, int, float, bool, :class:`datetime.timedelta`
(``"10s"``, ``"1m30s"``, ``"250ms"`` or a number of seconds), Enum (by name),
``list[X]``, ``dict[str, X]``, ``X | None``, ``Literal[...]``, and nested dataclasses.
"""

from __future__ import annotations

from policy.error_base import PolicyError

import dataclasses
import datetime as _dt
import enum
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = dataclasses.MISSING


@dataclasses.dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field: where (a dotted path) and what.

    :param field: the field's path (``quotas[0].maxAmount``); empty for the params as a whole.
    :param message: what is wrong.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ParamsError(PolicyError, ValueError):
    """Params failed validation; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def param(default: Any = _MISSING, *, doc: str, default_factory: Any = _MISSING) -> Any:
    """Declare a params field with its documentation (and a default, if it has one)."""
    kw: dict[str, Any] = {"metadata": {"doc": doc}}
    if default is not _MISSING:
        kw["default"] = default
    if default_factory is not _MISSING:
        kw["default_factory"] = default_factory
    return dataclasses.field(**kw)


@dataclasses.dataclass(frozen=True)
class NoParams:
    """Params of an adapter that takes none."""


def camel(name: str) -> str:
    """``max_amount`` → ``maxAmount``; names already camelCase are unchanged."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> _dt.timedelta:
    """Parse ``"1h30m"``, ``"250ms"``, ``"10s"`` or a number of seconds into a timedelta.

    Raises ValueError with the offending value.
    """
    if isinstance(value, _dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '10s', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return _dt.timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("0", ""):
            return _dt.timedelta(0)
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos == len(text) and pos > 0:
            return _dt.timedelta(seconds=total)
    raise ValueError(f"expected a duration such as '10s', '1m30s' or '250ms', got {value!r}")


def parse_params(cls: type[T], raw: Mapping[str, Any] | None, *, path: str = "") -> T:
    """Build a ``cls`` params dataclass from a raw mapping; raise ParamsError listing all problems."""
    errors: list[FieldError] = []
    result: T = _convert(cls, {} if raw is None else raw, path, errors)
    if errors:
        raise ParamsError(errors)
    return result


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _convert(hint: Any, value: Any, path: str, errors: list[FieldError]) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(options) == 1:
            return _convert(options[0], value, path, errors)
        for option in options:
            trial: list[FieldError] = []
            out = _convert(option, value, path, trial)
            if not trial:
                return out
        errors.append(FieldError(path, f"expected one of {_names(options)}, got {value!r}"))
        return None
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            errors.append(FieldError(path, f"expected one of {list(allowed)}, got {value!r}"))
        return value
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            errors.append(FieldError(path, f"expected a list, got {_show(value)}"))
            return []
        (item,) = typing.get_args(hint)[:1] or (Any,)
        converted = [_convert(item, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple or hint is tuple else converted
    if origin in (dict, Mapping, typing.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            errors.append(FieldError(path, f"expected a mapping, got {_show(value)}"))
            return {}
        args = typing.get_args(hint)
        value_hint = args[1] if len(args) == 2 else Any
        return {str(k): _convert(value_hint, v, f"{path}[{k!r}]", errors) for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass(hint, value, path, errors)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        names = [m.name for m in hint]
        if isinstance(value, str) and value in names:
            return hint[value]
        errors.append(FieldError(path, f"expected one of {names}, got {value!r}"))
        return None
    if hint is _dt.timedelta:
        try:
            return parse_duration(value)
        except ValueError as exc:
            errors.append(FieldError(path, str(exc)))
            return None
    if hint is bool:
        if isinstance(value, bool):
            return value
        errors.append(FieldError(path, f"expected true or false, got {_show(value)}"))
        return None
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        errors.append(FieldError(path, f"expected an integer, got {_show(value)}"))
        return None
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        errors.append(FieldError(path, f"expected a number, got {_show(value)}"))
        return None
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        errors.append(FieldError(path, f"expected a string, got {_show(value)}"))
        return None
    raise TypeError(f"params field {path or '<root>'}: unsupported type hint {hint!r}")


def _dataclass(cls: type, value: Any, path: str, errors: list[FieldError]) -> Any:
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, f"expected a mapping, got {_show(value)}"))
        return None
    before = len(errors)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    by_key: dict[str, str] = {}
    for name in fields:
        by_key[camel(name)] = name
        by_key[name] = name
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        found = by_key.get(str(key))
        if found is None:
            known = ", ".join(sorted(camel(n) for n in fields)) or "none"
            errors.append(FieldError(_join(path, str(key)), f"unknown field (known: {known})"))
            continue
        kwargs[found] = _convert(hints[found], raw, _join(path, camel(found)), errors)
    for name, f in fields.items():
        if name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING:
            errors.append(FieldError(_join(path, camel(name)), "required field is missing"))
    if len(errors) > before:
        return None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        errors.append(FieldError(path, str(exc)))
        return None


def _names(options: list[Any]) -> list[str]:
    return [getattr(o, "__name__", repr(o)) for o in options]


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def describe_params(cls: type) -> list[dict[str, Any]]:
    """List a params dataclass's fields for documentation: name, type, default, doc.

    Nested dataclasses are flattened with dotted names (``quotas[].maxAmount``).
    """
    rows: list[dict[str, Any]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        default: Any
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        rows.append({
            "name": camel(f.name),
            "type": _type_text(hint),
            "required": default is _MISSING,
            "default": None if default is _MISSING else default,
            "doc": f.metadata.get("doc", ""),
        })
        inner = _inner_dataclass(hint)
        if inner is not None:
            suffix = "[]" if typing.get_origin(hint) in (list, tuple) else ""
            for row in describe_params(inner):
                rows.append({**row, "name": f"{camel(f.name)}{suffix}.{row['name']}"})
    return rows


def _inner_dataclass(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    for arg in typing.get_args(hint):
        found = _inner_dataclass(arg)
        if found is not None:
            return found
    return None


def _type_text(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_text(a) for a in typing.get_args(hint) if a is not type(None)]
        return " | ".join(parts) + " (optional)"
    if origin in (list, tuple):
        return f"list of {_type_text(typing.get_args(hint)[0])}"
    if origin in (dict, Mapping):
        return f"map of {_type_text(typing.get_args(hint)[1])}"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return " | ".join(m.name for m in hint)
    if hint is _dt.timedelta:
        return "duration"
    if dataclasses.is_dataclass(hint):
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )
