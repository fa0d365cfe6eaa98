"""Attribute value types and the Python representation each one takes.

| ValueType    | Python value                                   |
|--------------|------------------------------------------------|
| STRING       | ``str``                                        |
| INT64        | ``int``                                        |
| DOUBLE       | ``float``                                      |
| BOOL         | ``bool``                                       |
| TIMESTAMP    | ``datetime.datetime`` (timezone-aware, UTC)    |
| DURATION     | ``datetime.timedelta``                         |
| IP_ADDRESS   | ``ipaddress.IPv4Address`` / ``IPv6Address``    |
| BYTES        | ``bytes``                                      |
| STRING_MAP   | ``Mapping[str, str]``                          |
"""

from __future__ import annotations

import datetime as _dt
import enum
import ipaddress
from collections.abc import Mapping
from typing import Any


class ValueType(enum.Enum):
    """The type of an attribute or of an expression's result."""

    STRING = "STRING"
    INT64 = "INT64"
    DOUBLE = "DOUBLE"
    BOOL = "BOOL"
    TIMESTAMP = "TIMESTAMP"
    DURATION = "DURATION"
    IP_ADDRESS = "IP_ADDRESS"
    BYTES = "BYTES"
    STRING_MAP = "STRING_MAP"
    # Not an attribute type: the result type of expressions such as ``dnsName(..)``
    # that Mixer types as their own kinds but which are strings here.
    ANY = "ANY"

    def __repr__(self) -> str:
        return f"ValueType.{self.name}"


_PYTHON_TYPES: dict[ValueType, tuple[type, ...]] = {
    ValueType.STRING: (str,),
    ValueType.INT64: (int,),
    ValueType.DOUBLE: (float, int),
    ValueType.BOOL: (bool,),
    ValueType.TIMESTAMP: (_dt.datetime,),
    ValueType.DURATION: (_dt.timedelta,),
    ValueType.IP_ADDRESS: (ipaddress.IPv4Address, ipaddress.IPv6Address),
    ValueType.BYTES: (bytes,),
    ValueType.STRING_MAP: (Mapping,),
}


def conforms(value: Any, value_type: ValueType) -> bool:
    """Tell whether ``value`` is a valid Python representation of ``value_type``."""
    if value_type is ValueType.ANY:
        return True
    if isinstance(value, bool) and value_type in (ValueType.INT64, ValueType.DOUBLE):
        return False
    return isinstance(value, _PYTHON_TYPES[value_type])


def type_name(value: Any) -> str:
    """Name the attribute type a Python value would have, for error messages."""
    if isinstance(value, bool):
        return ValueType.BOOL.name
    if isinstance(value, int):
        return ValueType.INT64.name
    for value_type, python_types in _PYTHON_TYPES.items():
        if isinstance(value, python_types):
            return value_type.name
    return type(value).__name__
