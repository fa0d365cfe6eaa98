"""Translation between ``policy.v1`` messages and typed Python attribute values."""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import math
from typing import Any

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import status_pb2

from policy.attributes import ValueType, Vocabulary, conforms, standard_vocabulary
from policy.servers.native_codec import (
    CodecError,
    attributes_from_proto,
    attributes_to_proto,
    duration_to_proto,
    status_to_proto,
)
from policy.v1 import policy_pb2

UTC = dt.timezone.utc

#: One attribute per type, so every mismatch can be provoked.
VOCABULARY = Vocabulary({f"t.{t.name.lower()}": t for t in ValueType if t is not ValueType.ANY})

SAMPLES: dict[ValueType, Any] = {
    ValueType.STRING: "/api/v1/ünïcode",
    ValueType.INT64: -(2**63),
    ValueType.DOUBLE: 0.1,
    ValueType.BOOL: False,
    ValueType.BYTES: b"\x00\xffraw",
    ValueType.TIMESTAMP: dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    ValueType.DURATION: dt.timedelta(days=2, microseconds=7),
    ValueType.IP_ADDRESS: ipaddress.IPv4Address("10.1.2.3"),
    ValueType.STRING_MAP: {"user-agent": "curl/8", ":authority": "svc", "empty": ""},
}
EXTRA_SAMPLES: list[tuple[ValueType, Any]] = [
    (ValueType.STRING, ""),
    (ValueType.INT64, 2**63 - 1),
    (ValueType.INT64, 0),
    (ValueType.DOUBLE, -1e300),
    (ValueType.DOUBLE, math.inf),
    (ValueType.BOOL, True),
    (ValueType.BYTES, b""),
    (ValueType.TIMESTAMP, dt.datetime(1960, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    (ValueType.TIMESTAMP, dt.datetime(1, 1, 1, tzinfo=UTC)),
    (ValueType.TIMESTAMP, dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    (ValueType.DURATION, dt.timedelta(seconds=-1.5)),
    (ValueType.DURATION, dt.timedelta(microseconds=-1)),
    (ValueType.DURATION, dt.timedelta(0)),
    (ValueType.IP_ADDRESS, ipaddress.IPv6Address("fe80::1")),
    (ValueType.IP_ADDRESS, ipaddress.IPv6Address("::ffff:10.0.0.1")),
    (ValueType.STRING_MAP, {}),
]
ALL_SAMPLES = list(SAMPLES.items()) + EXTRA_SAMPLES


def _wire(msg: policy_pb2.Attributes) -> policy_pb2.Attributes:
    """The message as the server receives it: serialized and parsed again."""
    return policy_pb2.Attributes.FromString(msg.SerializeToString())


def _attrs(**values: policy_pb2.Value) -> policy_pb2.Attributes:
    msg = policy_pb2.Attributes()
    for name, value in values.items():
        msg.values[name.replace("_", ".")].CopyFrom(value)
    return msg


def _ts_value(seconds: int) -> policy_pb2.Value:
    return policy_pb2.Value(timestamp_value=timestamp_pb2.Timestamp(seconds=seconds))


def _dur_value(seconds: int) -> policy_pb2.Value:
    return policy_pb2.Value(duration_value=duration_pb2.Duration(seconds=seconds))


def _decode_one(name: str, value: policy_pb2.Value, vocabulary: Any = VOCABULARY) -> Any:
    msg = policy_pb2.Attributes()
    msg.values[name].CopyFrom(value)
    return attributes_from_proto(msg, vocabulary)[name]


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value_type", "value"), ALL_SAMPLES, ids=lambda x: repr(x)[:40])
def test_round_trip_known_attribute(value_type: ValueType, value: Any) -> None:
    name = f"t.{value_type.name.lower()}"
    decoded = attributes_from_proto(_wire(attributes_to_proto({name: value})), VOCABULARY)
    assert decoded == {name: value}
    assert type(decoded[name]) is type(value) or isinstance(value, dict)
    assert conforms(decoded[name], value_type)


@pytest.mark.parametrize(("value_type", "value"), ALL_SAMPLES, ids=lambda x: repr(x)[:40])
def test_unknown_attribute_keeps_its_own_type(value_type: ValueType, value: Any) -> None:
    decoded = attributes_from_proto(_wire(attributes_to_proto({"x.custom": value})), VOCABULARY)
    assert decoded == {"x.custom": value}
    assert conforms(decoded["x.custom"], value_type)


def test_round_trip_a_whole_request_with_the_standard_vocabulary() -> None:
    values = {
        "source.ip": ipaddress.IPv4Address("10.0.0.1"),
        "destination.ip": ipaddress.IPv6Address("fe80::1"),
        "source.principal": "spiffe://cluster.local/ns/a/sa/b",
        "request.path": "/items",
        "request.headers": {"x-request-id": "abc"},
        "request.size": 1234,
        "request.time": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "response.duration": dt.timedelta(milliseconds=12),
        "connection.mtls": True,
        "x.unknown": 2.5,
    }
    decoded = attributes_from_proto(_wire(attributes_to_proto(values)), standard_vocabulary())
    assert decoded == values


def test_decode_accepts_a_plain_dict_vocabulary() -> None:
    msg = attributes_to_proto({"a": "x", "b": 1})
    assert attributes_from_proto(msg, {"a": ValueType.STRING}) == {"a": "x", "b": 1}
    assert attributes_from_proto(policy_pb2.Attributes(), {}) == {}


def test_any_in_the_vocabulary_accepts_every_transport_type() -> None:
    vocabulary = {"a": ValueType.ANY}
    for _, value in ALL_SAMPLES:
        assert attributes_from_proto(attributes_to_proto({"a": value}), vocabulary) == {"a": value}


def test_timestamps_decode_as_aware_utc() -> None:
    value = _decode_one(
        "t.timestamp", policy_pb2.Value(timestamp_value=timestamp_pb2.Timestamp(seconds=0))
    )
    assert value == dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert value.tzinfo is UTC


def test_timestamp_in_another_zone_encodes_the_same_instant() -> None:
    cest = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2024, 6, 1, 12, 0, tzinfo=cest)
    msg = attributes_to_proto({"t.timestamp": local})
    assert msg.values["t.timestamp"].timestamp_value.seconds == int(local.timestamp())
    decoded = attributes_from_proto(msg, VOCABULARY)["t.timestamp"]
    assert decoded == local and decoded.utcoffset() == dt.timedelta(0)


def test_sub_microsecond_parts_are_truncated_toward_zero() -> None:
    ts = timestamp_pb2.Timestamp(seconds=1, nanos=1999)
    assert _decode_one("t.timestamp", policy_pb2.Value(timestamp_value=ts)) == dt.datetime(
        1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC
    )
    negative = duration_pb2.Duration(seconds=-1, nanos=-1999)
    assert _decode_one("t.duration", policy_pb2.Value(duration_value=negative)) == dt.timedelta(
        seconds=-1, microseconds=-1
    )
    positive = duration_pb2.Duration(seconds=1, nanos=1999)
    assert _decode_one("t.duration", policy_pb2.Value(duration_value=positive)) == dt.timedelta(
        seconds=1, microseconds=1
    )


def test_negative_duration_encodes_with_one_sign() -> None:
    duration = attributes_to_proto({"d": dt.timedelta(seconds=-1.5)}).values["d"].duration_value
    assert (duration.seconds, duration.nanos) == (-1, -500_000_000)


def test_encode_puts_bool_before_int() -> None:
    msg = attributes_to_proto({"yes": True, "no": False, "one": 1, "zero": 0})
    kinds = {name: value.WhichOneof("kind") for name, value in msg.values.items()}
    assert kinds == {
        "yes": "bool_value", "no": "bool_value", "one": "int64_value", "zero": "int64_value"
    }


def test_encode_kinds_follow_python_types() -> None:
    msg = attributes_to_proto({f"t.{t.name.lower()}": v for t, v in SAMPLES.items()})
    for value_type in SAMPLES:
        name = f"t.{value_type.name.lower()}"
        assert msg.values[name].WhichOneof("kind") == f"{value_type.name.lower()}_value"


def test_encode_leaves_out_none_and_keeps_an_empty_map_present() -> None:
    msg = attributes_to_proto({"absent": None, "m": {}})
    assert list(msg.values) == ["m"]
    assert _wire(msg).values["m"].WhichOneof("kind") == "string_map_value"


def test_encode_accepts_bytearray_and_memoryview() -> None:
    msg = attributes_to_proto({"a": bytearray(b"ab"), "b": memoryview(b"cd")})
    assert attributes_from_proto(msg, {}) == {"a": b"ab", "b": b"cd"}


def test_ip_addresses_are_packed() -> None:
    msg = attributes_to_proto(
        {"v4": ipaddress.IPv4Address("1.2.3.4"), "v6": ipaddress.IPv6Address("::1")}
    )
    assert msg.values["v4"].ip_address_value == b"\x01\x02\x03\x04"
    assert msg.values["v6"].ip_address_value == b"\x00" * 15 + b"\x01"


# ---------------------------------------------------------------------------------------------
# Decode errors
# ---------------------------------------------------------------------------------------------

MISMATCHES = [
    (expected, sent)
    for expected in SAMPLES
    for sent in SAMPLES
    if expected is not sent
]


@pytest.mark.parametrize(("expected", "sent"), MISMATCHES, ids=lambda t: t.name)
def test_type_mismatch_names_attribute_and_both_types(
    expected: ValueType, sent: ValueType
) -> None:
    name = f"t.{expected.name.lower()}"
    msg = attributes_to_proto({name: SAMPLES[sent]})
    with pytest.raises(CodecError) as error:
        attributes_from_proto(msg, VOCABULARY)
    assert str(error.value) == (
        f"attribute {name!r} has type {expected.name} in the vocabulary,"
        f" but the request sent {sent.name} ({sent.name.lower()}_value)"
    )


def test_int_for_a_double_attribute_is_a_mismatch() -> None:
    # The wire type is explicit; a client sending int64 for a DOUBLE has a bug worth seeing.
    with pytest.raises(CodecError, match=r"'t.double' has type DOUBLE .* sent INT64"):
        attributes_from_proto(attributes_to_proto({"t.double": 3}), VOCABULARY)


def test_ip_sent_as_plain_bytes_is_a_mismatch() -> None:
    msg = _attrs(source_ip=policy_pb2.Value(bytes_value=b"\x0a\x00\x00\x01"))
    with pytest.raises(CodecError) as error:
        attributes_from_proto(msg, standard_vocabulary())
    assert str(error.value) == (
        "attribute 'source.ip' has type IP_ADDRESS in the vocabulary,"
        " but the request sent BYTES (bytes_value)"
    )


@pytest.mark.parametrize("length", [0, 1, 3, 5, 8, 15, 17, 32])
@pytest.mark.parametrize("name", ["t.ip_address", "x.unknown"])
def test_ip_address_of_the_wrong_length(name: str, length: int) -> None:
    msg = policy_pb2.Attributes()
    msg.values[name].ip_address_value = b"\x01" * length
    with pytest.raises(CodecError) as error:
        attributes_from_proto(_wire(msg), VOCABULARY)
    assert str(error.value) == (
        f"attribute {name!r}: an IP_ADDRESS must be 4 bytes (IPv4) or 16 bytes (IPv6),"
        f" got {length} bytes"
    )


def test_empty_value_of_a_known_attribute_names_its_type() -> None:
    msg = _attrs(request_size=policy_pb2.Value())
    with pytest.raises(CodecError) as error:
        attributes_from_proto(_wire(msg), standard_vocabulary())
    assert str(error.value) == (
        "attribute 'request.size' has type INT64 in the vocabulary,"
        " but the request sent an empty Value"
    )


@pytest.mark.parametrize("vocabulary", [{}, {"x.unknown": ValueType.ANY}])
def test_empty_value_of_an_unknown_attribute(vocabulary: dict[str, ValueType]) -> None:
    msg = _attrs(x_unknown=policy_pb2.Value())
    with pytest.raises(CodecError) as error:
        attributes_from_proto(_wire(msg), vocabulary)
    assert str(error.value) == (
        "attribute 'x.unknown': the Value is empty (no member of 'kind' is set)"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("t.timestamp", _ts_value(seconds=2**62)),
        ("t.timestamp", _ts_value(seconds=-(2**40))),
        ("t.duration", _dur_value(seconds=2**62)),
    ],
)
def test_out_of_range_time_values(name: str, value: policy_pb2.Value) -> None:
    with pytest.raises(CodecError, match=rf"^attribute {name!r}: value outside Python's range"):
        _decode_one(name, value)


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


def test_the_first_bad_attribute_is_reported_and_good_ones_do_not_matter() -> None:
    msg = attributes_to_proto({"request.path": "/", "request.size": "big"})
    with pytest.raises(CodecError, match="'request.size' has type INT64"):
        attributes_from_proto(msg, standard_vocabulary())


# ---------------------------------------------------------------------------------------------
# Encode errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (dt.datetime(2024, 1, 1), "attribute 'a': a TIMESTAMP must be a timezone-aware datetime"),
        (2**63, "attribute 'a': cannot encode int value"),
        (-(2**63) - 1, "attribute 'a': cannot encode int value"),
        (object(), "attribute 'a': no attribute type for a Python object"),
        (["x"], "attribute 'a': no attribute type for a Python list"),
        ({"k": 1}, "attribute 'a': a STRING_MAP holds str keys and values, got str → int"),
        ({1: "v"}, "attribute 'a': a STRING_MAP holds str keys and values, got int → str"),
        (dt.date(2024, 1, 1), "attribute 'a': no attribute type for a Python date"),
    ],
    ids=lambda x: repr(x)[:30],
)
def test_encode_errors_name_the_attribute(value: Any, message: str) -> None:
    with pytest.raises(CodecError) as error:
        attributes_to_proto({"a": value})
    assert str(error.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# Status and duration
# ---------------------------------------------------------------------------------------------


class _Code(enum.IntEnum):
    PERMISSION_DENIED = 7


def test_status_to_proto() -> None:
    assert status_to_proto(0, "") == status_pb2.Status()
    status = status_to_proto(_Code.PERMISSION_DENIED, "denier: not allowed")
    assert isinstance(status, status_pb2.Status)
    assert (status.code, status.message) == (7, "denier: not allowed")
    assert type(status.code) is int


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, (0, 0)),
        (0.0, (0, 0)),
        (60, (60, 0)),
        (1.5, (1, 500_000_000)),
        (1e-9, (0, 1)),
        (-0.25, (0, -250_000_000)),
        (-1.5, (-1, -500_000_000)),
        (315_576_000_000, (315_576_000_000, 0)),
    ],
)
def test_duration_to_proto(seconds: float, expected: tuple[int, int]) -> None:
    duration = duration_to_proto(seconds)
    assert isinstance(duration, duration_pb2.Duration)
    assert (duration.seconds, duration.nanos) == expected


def test_duration_to_proto_keeps_none_as_not_stated() -> None:
    assert duration_to_proto(None) is None


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan])
def test_duration_to_proto_rejects_non_finite(seconds: float) -> None:
    with pytest.raises(CodecError, match="a duration must be a finite number of seconds, got"):
        duration_to_proto(seconds)
