"""Envoy's ``AttributeContext`` in protobuf's JSON mapping, looked up by path and computed on lookup.

:class:`AttributePaths` is the value of the ``envoy.attributes_by_path`` attribute
(:mod:`policy.servers.envoy_attributes`): a policy that reads a few paths of OPA-Envoy's
``input.attributes`` pays for, and keys its cached decisions on, those paths alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format

__all__ = ["AttributePaths"]

_json_fields: dict[Any, dict[str, Any]] = {}


def _fields_by_json_name(descriptor: Any) -> dict[str, Any]:
    fields = _json_fields.get(descriptor)
    if fields is None:
        fields = _json_fields[descriptor] = {f.json_name: f for f in descriptor.fields}
    return fields


_MISSING = object()


_FD = _descriptor.FieldDescriptor
_INT64_TYPES = frozenset({_FD.TYPE_INT64, _FD.TYPE_UINT64, _FD.TYPE_SINT64, _FD.TYPE_FIXED64, _FD.TYPE_SFIXED64})
_PLAIN_SCALARS = frozenset({_FD.TYPE_STRING, _FD.TYPE_BOOL, _FD.TYPE_INT32, _FD.TYPE_UINT32, _FD.TYPE_SINT32,
                            _FD.TYPE_FIXED32, _FD.TYPE_SFIXED32})


def _string_map(field: Any) -> bool:
    entry = field.message_type
    return (entry is not None and entry.GetOptions().map_entry
            and all(f.type == _FD.TYPE_STRING for f in entry.fields))


def _field_value(message: Any, field: Any) -> Any:
    """One field's protojson value, for the common kinds (``_MISSING`` when left out; None: convert the holder)."""
    if field.is_repeated:
        if not _string_map(field):
            return None
        values = getattr(message, field.name)
        return dict(values) if values else _MISSING
    if field.message_type is not None:  # a well-known type (Timestamp, Struct ...): its own JSON form
        if not message.HasField(field.name):
            return _MISSING
        return json_format.MessageToDict(getattr(message, field.name))
    kind = field.type
    if kind not in _PLAIN_SCALARS and kind not in _INT64_TYPES:
        return None  # bytes, floats, enums: as json_format writes them
    if field.has_presence and not message.HasField(field.name):
        return _MISSING
    value = getattr(message, field.name)
    if not field.has_presence and not value:
        return _MISSING
    return str(value) if kind in _INT64_TYPES else value


def _value_at(message: Any, path: list[Any]) -> Any:
    """The protojson value at ``path`` in ``message`` (``_MISSING`` when protojson leaves it out).

    Plain sub-messages are descended field by field; a string, integer or boolean
    field, a string map or a well-known type is converted alone (headers without the
    body); the rest (lists, bytes, floats, enums) is converted from the message
    holding it. Either way the value is json_format's (tests/envoy check them equal).
    """
    at = 0
    value: Any = None
    while at < len(path):
        step = path[at]
        field = _fields_by_json_name(message.DESCRIPTOR).get(step) if isinstance(step, str) else None
        if field is None:
            return _MISSING  # protojson has no such member
        if (field.message_type is None or field.is_repeated
                or field.message_type.full_name.startswith("google.protobuf.")):
            value = _field_value(message, field)
            if value is _MISSING:
                return _MISSING
            at += 1 if value is not None else 0
            break
        if not message.HasField(field.name):
            return _MISSING
        message = getattr(message, field.name)
        at += 1
    if value is None:
        value = json_format.MessageToDict(message)
    for step in path[at:]:
        if isinstance(value, dict) and isinstance(step, str) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


class AttributePaths(Mapping[str, str]):
    """An ``AttributeContext`` in protobuf's JSON mapping, looked up by path.

    A key is a path into the document as a JSON list of member names
    (``'["request","http","headers","x-user"]'``; ``'[]'`` is the whole document) and
    its value the JSON text there, as Go's protojson writes it (absent where protojson
    leaves a field out). Values are computed when looked up, so a request pays only for
    the paths read, and the decision cache keys on those paths alone. Listing the map
    gives the whole document's key only.
    """

    __slots__ = ("_attributes", "_memo")

    def __init__(self, attributes: Any) -> None:
        self._attributes = attributes
        self._memo: dict[str, str | None] = {}

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """The JSON text at the path ``key`` (``default`` when absent or not a path)."""
        memo = self._memo
        if key in memo:
            value = memo[key]
            return default if value is None else value
        text: str | None = None
        try:
            path = json.loads(key)
        except (TypeError, ValueError):
            path = None
        if isinstance(path, list):
            found = _value_at(self._attributes, path)
            if found is not _MISSING:
                text = json.dumps(found, separators=(",", ":"), ensure_ascii=False)
        memo[key] = text
        return default if text is None else text

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Any:
        return iter(("[]",))

    def __len__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AttributePaths) and other.get("[]") == self.get("[]")

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "AttributePaths(...)"
