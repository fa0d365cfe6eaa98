"""Parse ``NAME=VALUE`` command-line attributes by the attribute's vocabulary type."""

from __future__ import annotations

import base64
import datetime as _dt
import difflib
import ipaddress
from typing import Any

from policy.attributes import ValueType, Vocabulary
from policy.sdk import parse_duration


class ValueParseError(ValueError):
    """A command-line attribute could not be parsed; the message says which and why."""


def _timestamp(text: str) -> _dt.datetime:
    value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _bytes(text: str) -> bytes:
    if text.startswith("base64:"):
        return base64.b64decode(text[len("base64:"):], validate=True)
    return text.encode()


def _map(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition(":")
        if not sep:
            raise ValueError(f"expected key:value pairs separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out


_PARSERS = {
    ValueType.STRING: str,
    ValueType.INT64: int,
    ValueType.DOUBLE: float,
    ValueType.BOOL: _bool,
    ValueType.TIMESTAMP: _timestamp,
    ValueType.DURATION: parse_duration,
    ValueType.IP_ADDRESS: ipaddress.ip_address,
    ValueType.BYTES: _bytes,
    ValueType.STRING_MAP: _map,
}


def parse_attribute_args(args: list[str], vocabulary: Vocabulary) -> dict[str, Any]:
    """Turn ``["source.ip=10.0.0.1", "request.headers[x-user]=alice"]`` into typed attributes.

    A map key is set with ``name[key]=value``; a whole map with ``name=k1:v1,k2:v2``.
    Raises ValueParseError naming the argument, the attribute's type and the problem.
    """
    values: dict[str, Any] = {}
    for arg in args:
        name, sep, text = arg.partition("=")
        if not sep:
            raise ValueParseError(f"--attr {arg!r}: expected NAME=VALUE")
        name = name.strip()
        key = None
        if name.endswith("]") and "[" in name:
            name, _, key = name[:-1].partition("[")
            key = key.strip().strip("'\"")
        value_type = vocabulary.get(name)
        if value_type is None:
            close = difflib.get_close_matches(name, list(vocabulary), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueParseError(f"--attr {arg!r}: unknown attribute {name!r}{hint}")
        if key is not None:
            if value_type is not ValueType.STRING_MAP:
                raise ValueParseError(f"--attr {arg!r}: {name} is {value_type.name}, not a map")
            values.setdefault(name, {})[key] = text
            continue
        try:
            values[name] = _PARSERS[value_type](text)
        except ValueError as exc:
            raise ValueParseError(f"--attr {arg!r}: {name} is {value_type.name}: {exc}") from None
    return values
