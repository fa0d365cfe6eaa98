"""Translation between the native ``policy.v1`` messages and typed Python values.

Used by the native server (requests in, responses out), the CLI client and
tests. Decoding validates at the edge: a value whose transport type disagrees
with the vocabulary, an IP address that is neither 4 nor 16 bytes, or a
``Value`` with nothing set raises :class:`CodecError`, which the server turns
into ``INVALID_ARGUMENT``. Attributes the vocabulary does not know are kept
with the type they arrived in.

Python representations follow :mod:`policy.attributes.types`. Timestamps and
durations carry nanoseconds on the wire but microseconds in Python; the
sub-microsecond part is truncated (toward zero) when decoding.
"""

from __future__ import annotations

from policy.error_base import PolicyError

import datetime as _dt
import functools
import ipaddress
import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import duration_pb2
from google.rpc import status_pb2

from policy.attributes.types import ValueType
from policy.v1 import policy_pb2

__all__ = [
    "CodecError",
    "attributes_from_proto",
    "attributes_to_proto",
    "duration_to_proto",
    "ip_from_raw",
    "status_to_proto",
]

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_timedelta = _dt.timedelta
_IPv4 = ipaddress.IPv4Address
_IPv6 = ipaddress.IPv6Address

# The oneof member of ``policy.v1.Value`` that carries each attribute type.
_KIND_OF_TYPE: dict[ValueType, str] = {
    ValueType.STRING: "string_value",
    ValueType.INT64: "int64_value",
    ValueType.DOUBLE: "double_value",
    ValueType.BOOL: "bool_value",
    ValueType.BYTES: "bytes_value",
    ValueType.TIMESTAMP: "timestamp_value",
    ValueType.DURATION: "duration_value",
    ValueType.IP_ADDRESS: "ip_address_value",
    ValueType.STRING_MAP: "string_map_value",
}
_TYPE_OF_KIND: dict[str, ValueType] = {kind: t for t, kind in _KIND_OF_TYPE.items()}
_ANY = ValueType.ANY


class CodecError(PolicyError, ValueError):
    """A message or value could not be translated; the message names the attribute."""


# ---------------------------------------------------------------------------------------------
# proto → Python
# ---------------------------------------------------------------------------------------------


def attributes_from_proto(
    msg: policy_pb2.Attributes, vocabulary: Mapping[str, ValueType]
) -> dict[str, Any]:
    """Decode ``msg`` into a dict of typed Python values, checked against ``vocabulary``.

    :param msg: the request's attributes.
    :param vocabulary: attribute name → type; names it lacks are decoded by their own type.
    :raises CodecError: a type mismatch, a bad IP address length, an unset value, or a
        timestamp or duration outside Python's range.
    """
    out: dict[str, Any] = {}
    get_type = vocabulary.get
    name = ""
    try:
        for name, value in msg.values.items():
            kind = value.WhichOneof("kind")
            expected = get_type(name)
            # Identity tests on str-keyed lookups: hashing the enum costs more on this path.
            if (
                expected is not None
                and expected is not _TYPE_OF_KIND.get(kind)  # type: ignore[arg-type]
                and expected is not _ANY
            ):
                raise _mismatch(name, expected, kind)
            # Ordered by how often each type occurs in real requests.
            if kind == "string_value":
                out[name] = value.string_value
            elif kind == "int64_value":
                out[name] = value.int64_value
            elif kind == "string_map_value":
                out[name] = dict(value.string_map_value.entries)
            elif kind == "ip_address_value":
                out[name] = _ip_from_bytes(name, value.ip_address_value)
            elif kind == "timestamp_value":
                ts = value.timestamp_value
                out[name] = _EPOCH + _timedelta(0, ts.seconds, ts.nanos // 1000)
            elif kind == "duration_value":
                d = value.duration_value
                # Seconds and nanos share a sign; truncate the nanos toward zero.
                micros = d.nanos // 1000 if d.nanos >= 0 else -(-d.nanos // 1000)
                out[name] = _timedelta(0, d.seconds, micros)
            elif kind == "bool_value":
                out[name] = value.bool_value
            elif kind == "double_value":
                out[name] = value.double_value
            elif kind == "bytes_value":
                out[name] = value.bytes_value
            else:
                raise CodecError(
                    f"attribute {name!r}: the Value is empty (no member of 'kind' is set)"
                )
    except OverflowError as error:
        # A timestamp or duration beyond what datetime/timedelta can hold.
        raise CodecError(f"attribute {name!r}: value outside Python's range: {error}") from None
    return out


def _mismatch(name: str, expected: ValueType, kind: str | None) -> CodecError:
    got = _TYPE_OF_KIND[kind].name if kind else "an empty Value"
    return CodecError(
        f"attribute {name!r} has type {expected.name} in the vocabulary, but the request"
        f" sent {got}" + (f" ({kind})" if kind else "")
    )


def _ip_from_bytes(name: str, raw: bytes) -> _IPv4 | _IPv6:
    ip = _ip_cache(raw) if len(raw) in (4, 16) else None
    if ip is not None:
        return ip
    raise CodecError(
        f"attribute {name!r}: an IP_ADDRESS must be 4 bytes (IPv4) or 16 bytes (IPv6),"
        f" got {len(raw)} bytes"
    )


@functools.lru_cache(maxsize=4096)
def _ip_cache(raw: bytes) -> _IPv4 | _IPv6 | None:
    # Building an address object runs Python code; a sidecar sees few distinct peers.
    if len(raw) == 4:
        return _IPv4(raw)
    if len(raw) == 16:
        return _IPv6(raw)
    return None


def ip_from_raw(raw: bytes) -> _IPv4 | _IPv6 | None:
    """The address an ``ip_address_value`` of 4 (IPv4) or 16 (IPv6) bytes holds; None for other lengths."""
    return _ip_cache(raw)


# ---------------------------------------------------------------------------------------------
# Python → proto
# ---------------------------------------------------------------------------------------------


def attributes_to_proto(values: Mapping[str, Any]) -> policy_pb2.Attributes:
    """Encode typed Python values as ``policy.v1.Attributes``; ``None`` values are left out.

    The transport type follows the Python type (see :mod:`policy.attributes.types`).
    Datetimes must be timezone-aware; naive ones are rejected rather than guessed.

    :raises CodecError: a value of an unsupported type, a naive datetime, or an int
        outside the int64 range; the message names the attribute.
    """
    msg = policy_pb2.Attributes()
    out = msg.values
    for name, value in values.items():
        if value is None:
            continue
        try:
            _encode(out[name], value)
        except CodecError as error:
            raise CodecError(f"attribute {name!r}: {error}") from None
        except (TypeError, ValueError, OverflowError) as error:
            raise CodecError(
                f"attribute {name!r}: cannot encode {type(value).__name__} value: {error}"
            ) from error
    return msg


def _encode(target: policy_pb2.Value, value: Any) -> None:
    # bool before int: bool is a subclass of int.
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int64_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        target.bytes_value = bytes(value)
    elif isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise CodecError("a TIMESTAMP must be a timezone-aware datetime, got a naive one")
        micros = (value - _EPOCH) // _timedelta(microseconds=1)
        seconds, micros = divmod(micros, 1_000_000)
        target.timestamp_value.seconds = seconds
        target.timestamp_value.nanos = micros * 1000
    elif isinstance(value, _dt.timedelta):
        _set_duration(target.duration_value, value // _timedelta(microseconds=1) * 1000)
    elif isinstance(value, (_IPv4, _IPv6)):
        target.ip_address_value = value.packed
    elif isinstance(value, Mapping):
        entries = target.string_map_value.entries
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str):
                raise CodecError(
                    f"a STRING_MAP holds str keys and values, got {type(key).__name__}"
                    f" → {type(item).__name__} for key {key!r}"
                )
            entries[key] = item
        if not value:
            # An empty map is still a present attribute: mark the member as set.
            target.string_map_value.SetInParent()
    else:
        raise CodecError(f"no attribute type for a Python {type(value).__name__}")


def _set_duration(target: duration_pb2.Duration, nanos: int) -> None:
    # Duration wants seconds and nanos with the same sign, so split the magnitude.
    seconds, rest = divmod(abs(nanos), 1_000_000_000)
    sign = -1 if nanos < 0 else 1
    target.seconds = sign * seconds
    target.nanos = sign * rest


# ---------------------------------------------------------------------------------------------
# Response pieces
# ---------------------------------------------------------------------------------------------


def status_to_proto(code: int, message: str) -> status_pb2.Status:
    """Build a ``google.rpc.Status`` from a gRPC code number (0 = OK) and a message."""
    return status_pb2.Status(code=int(code), message=message)


def duration_to_proto(seconds: float | None) -> duration_pb2.Duration | None:
    """Convert seconds to a ``Duration``, to the nanosecond; ``None`` stays ``None``.

    ``None`` means "not stated": callers leave the message field unset, which
    clients read as "do not cache", the same as a zero duration.

    :raises CodecError: ``seconds`` is infinite or NaN.
    """
    if seconds is None:
        return None
    if not math.isfinite(seconds):
        raise CodecError(f"a duration must be a finite number of seconds, got {seconds!r}")
    msg = duration_pb2.Duration()
    _set_duration(msg, round(seconds * 1_000_000_000))
    return msg
