"""The native Check's wire fast path (:mod:`policy.servers.native_wire`) against protobuf's path.

The property: whenever the fast path answers, protobuf decodes the same bytes without
error, with no quotas and no deduplication id, and ``attributes_from_proto`` (then the
path normalization) gives equal values of the same types; when it does not answer, the
server decodes with protobuf as before. Checked on seeded generated requests, on
seeded byte mutations of them and on hand-made layouts protobuf accepts but the fast
path does not read.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import random
from typing import Any

import pytest

from policy.attributes import ValueType, Vocabulary, standard_vocabulary
from policy.servers.native_codec import CodecError, attributes_from_proto, attributes_to_proto
from policy.servers.native_wire import MAX_ENTRY_BYTES, MAX_RUN_BYTES, WireDecoder
from policy.servers.paths import MODES, normalize_attributes
from policy.v1 import policy_pb2

UTC = dt.timezone.utc
SEED = 20261129
VOCABULARY = standard_vocabulary().merged(
    Vocabulary({f"t.{t.name.lower()}": t for t in ValueType if t is not ValueType.ANY} | {"t.any": ValueType.ANY}),
    source="test")


def _request(attributes: dict[str, Any], **fields: Any) -> bytes:
    return policy_pb2.CheckRequest(attributes=attributes_to_proto(attributes), **fields).SerializeToString()


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def reference(data: bytes, mode: str) -> dict[str, Any] | None:
    """What the server's protobuf path makes of ``data`` when it has no quotas; None when it refuses it."""
    try:
        request = policy_pb2.CheckRequest.FromString(data)
    except Exception:  # noqa: BLE001 - any decode failure answers INVALID_ARGUMENT
        return None
    assert not request.quotas and not request.deduplication_id, "the fast path took a request with more than attributes"
    try:
        values = attributes_from_proto(request.attributes, VOCABULARY)
    except CodecError:
        return None
    return dict(normalize_attributes(values, mode))


def assert_agrees(decoder: WireDecoder, data: bytes) -> dict[str, Any] | None:
    """The fast path's answer, asserted equal to protobuf's whenever it gives one."""
    fast = decoder.attributes(data)
    if fast is not None:
        slow = reference(data, decoder.path_mode)
        assert slow is not None, f"fast path accepted what protobuf refuses: {data!r}"
        assert fast.keys() == slow.keys()
        for name in fast:
            assert _same(fast[name], slow[name]), (name, fast[name], slow[name])
    return fast


_STRINGS = ["", "GET", "ünïcode ✓", "a" * 200, "/api/books/42", "/a/../admin", "//admin", "/x/%2e%2e/y?q=/..", "\x00"]
_VALUES: dict[ValueType, list[Any]] = {
    ValueType.STRING: _STRINGS,
    ValueType.INT64: [0, 1, -1, 127, 128, 2**31, -(2**63), 2**63 - 1, 8080],
    ValueType.DOUBLE: [0.0, -0.0, 0.1, -1e300, math.inf, -math.inf, math.nan],
    ValueType.BOOL: [True, False],
    ValueType.BYTES: [b"", b"\x00\xff", b"x" * 300],
    ValueType.TIMESTAMP: [dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC), dt.datetime(1960, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
                          dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
    ValueType.DURATION: [dt.timedelta(0), dt.timedelta(seconds=-1.5), dt.timedelta(microseconds=-1),
                         dt.timedelta(days=2, microseconds=7)],
    ValueType.IP_ADDRESS: [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("fe80::1"),
                           ipaddress.ip_address("::ffff:10.0.0.1")],
    ValueType.STRING_MAP: [{}, {"x-user": "alice", "": ""}, {"k" * 150: "v" * 150, "ü": "✓"}],
}
_NAMES = ["source.ip", "source.principal", "destination.port", "request.path", "request.url_path",
          "request.headers", "request.time", "request.id", "unknown.attr", "ünknown", "t.any",
          *(f"t.{t.name.lower()}" for t in _VALUES)]


def _random_attributes(rng: random.Random) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for _ in range(rng.randrange(0, 18)):
        name = rng.choice(_NAMES)
        expected = VOCABULARY.get(name)
        if expected is None or expected is ValueType.ANY or rng.random() < 0.1:  # sometimes a mismatch
            kind = rng.choice(list(_VALUES))
        else:
            kind = expected
        attributes[name] = rng.choice(_VALUES[kind])
    return attributes


@pytest.mark.parametrize("mode", MODES)
def test_generated_requests_decode_as_protobuf_does(mode: str) -> None:
    rng = random.Random(SEED)
    decoder = WireDecoder(VOCABULARY, mode, max_entries=64)  # small: the memo also empties along the way
    taken = 0
    for _ in range(1500):
        data = _request(_random_attributes(rng))
        fast = assert_agrees(decoder, data)
        # Every request protobuf serializes and the codec accepts is taken by the fast path.
        assert (fast is None) == (reference(data, mode) is None), data
        taken += fast is not None
        assert (assert_agrees(decoder, data) is None) == (fast is None)  # again, from the memo
    assert taken > 500


def test_mutated_requests_never_decode_differently() -> None:
    rng = random.Random(SEED + 1)
    decoder = WireDecoder(VOCABULARY, "merge-slashes")
    seeds = [_request(_random_attributes(rng)) for _ in range(60)]
    accepted = 0
    for _ in range(6000):
        data = bytearray(rng.choice(seeds))
        if not data:
            continue
        how = rng.randrange(5)
        at = rng.randrange(len(data))
        if how == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif how == 1:
            del data[at:]
        elif how == 2:
            data.insert(at, rng.randrange(256))
        elif how == 3:
            data[at:at] = data[at:at + rng.randrange(1, 16)]
        else:
            data[at] = rng.randrange(256)
        accepted += assert_agrees(decoder, bytes(data)) is not None
    assert accepted > 0


TYPICAL = {"source.ip": ipaddress.ip_address("10.1.2.3"), "request.path": "/api/books/42",
           "request.headers": {"x-user": "alice"}, "destination.port": 8080}


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One field; a length-delimited payload gets its (one-byte) length."""
    if wire_type == 2:
        assert len(payload) < 128
        payload = bytes([len(payload)]) + payload
    return bytes([number << 3 | wire_type]) + payload


def _attributes_field(*entries: bytes) -> bytes:
    body = b"".join(_field(1, 2, entry) for entry in entries)
    return _field(1, 2, body)


@pytest.mark.parametrize("data", [
    pytest.param(_request(TYPICAL, quotas={"q": policy_pb2.CheckRequest.QuotaParams(amount=1)}), id="quotas"),
    pytest.param(_request(TYPICAL, deduplication_id="d-1"), id="deduplication-id"),
    pytest.param(_attributes_field(_field(2, 2, _field(1, 2, b"x")) + _field(1, 2, b"request.id")),
                 id="value-before-key"),
    pytest.param(_attributes_field(_field(1, 2, b"request.id")), id="key-without-value"),
    pytest.param(_attributes_field(_field(1, 2, b"request.id") + _field(2, 2, _field(1, 2, b"a") + _field(1, 2, b"b"))),
                 id="two-members-set"),
    pytest.param(_attributes_field(_field(1, 2, b"request.id") + _field(2, 2, _field(1, 2, b"a")) + b"\x18\x01"),
                 id="unknown-field-in-entry"),
    pytest.param(_request(TYPICAL) + b"\x1a\x00", id="empty-deduplication-id-after"),
    pytest.param(_attributes_field(_field(1, 2, b"t.bool") + _field(2, 2, b"\x20\x02")), id="bool-of-two"),
])
def test_layouts_protobuf_accepts_are_left_to_protobuf(data: bytes) -> None:
    policy_pb2.CheckRequest.FromString(data)  # protobuf reads each of these
    assert WireDecoder(VOCABULARY).attributes(data) is None


@pytest.mark.parametrize("attributes", [
    pytest.param({"source.ip": "10.1.2.3"}, id="type-mismatch"),
    pytest.param({"t.ip_address": b"\x01\x02\x03"}, id="ip-of-three-bytes"),
])
def test_values_the_codec_refuses_are_left_to_protobuf(attributes: dict[str, Any]) -> None:
    data = _request(attributes)
    if "t.ip_address" in attributes:  # bytes encode as bytes_value: make it an ip_address_value (field 8)
        message = policy_pb2.CheckRequest()
        message.attributes.values["t.ip_address"].ip_address_value = b"\x01\x02\x03"
        data = message.SerializeToString()
    with pytest.raises(CodecError):
        attributes_from_proto(policy_pb2.CheckRequest.FromString(data).attributes, VOCABULARY)
    assert WireDecoder(VOCABULARY).attributes(data) is None


@pytest.mark.parametrize("body", [
    pytest.param(b"\x10\x01\x08\x01", id="fields-out-of-order"),
    pytest.param(b"\x08\x01\x08\x05\x10\x07", id="a-field-twice"),
    pytest.param(b"\x18\x01\x08\x02", id="an-unknown-field"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\x10\xff\xff\xff\xff\x0f", id="nanos-beyond-int32"),
])
@pytest.mark.parametrize("name", ["request.time", "response.duration"])
def test_timestamp_and_duration_bodies_are_read_as_protobuf_reads_them(name: str, body: bytes) -> None:
    tag = 6 if name == "request.time" else 7
    data = _attributes_field(_field(1, 2, name.encode()) + _field(2, 2, _field(tag, 2, body)))
    assert assert_agrees(WireDecoder(VOCABULARY), data) is not None


def test_empty_value_and_invalid_utf8_are_left_to_protobuf() -> None:
    empty = _attributes_field(_field(1, 2, b"request.id") + _field(2, 2, b""))
    assert WireDecoder(VOCABULARY).attributes(empty) is None
    bad_text = _attributes_field(_field(1, 2, b"request.id") + _field(2, 2, _field(1, 2, b"\xff\xfe")))
    assert WireDecoder(VOCABULARY).attributes(bad_text) is None
    truncated = _request(TYPICAL)[:-3]
    assert WireDecoder(VOCABULARY).attributes(truncated) is None


def test_an_empty_request_has_no_attributes() -> None:
    assert WireDecoder(VOCABULARY).attributes(b"") == {}
    assert WireDecoder(VOCABULARY).attributes(_request({})) == {}


def test_a_decoded_map_is_a_fresh_copy_for_each_request() -> None:
    decoder = WireDecoder(VOCABULARY)
    data = _request({"request.id": "r", **TYPICAL})
    for _ in range(4):  # decoded, from the entry memo, from runs of entries
        values = decoder.attributes(data)
        assert values["request.headers"] == {"x-user": "alice"}
        values["request.headers"]["x-user"] = "mallory"


def _entry_bytes(name: str, value: Any) -> bytes:
    """One serialized ``Attributes.values`` entry (its field tag and length included)."""
    return policy_pb2.Attributes(values={name: attributes_to_proto({name: value}).values[name]}).SerializeToString()


def test_runs_of_entries_follow_what_each_request_carries() -> None:
    """Requests sharing entries in changing orders, with a fresh id between them, a repeated name in one."""
    decoder = WireDecoder(VOCABULARY, "merge-slashes")
    stable = [_entry_bytes(name, value) for name, value in TYPICAL.items()]
    other_path = _entry_bytes("request.path", "/admin/../x")
    rng = random.Random(SEED + 2)
    used_runs = 0
    for index in range(400):
        entries = list(stable)
        if index % 3:
            entries.insert(rng.randrange(len(entries) + 1), _entry_bytes("request.id", f"id-{index}"))
        if index % 5 == 0:
            entries.insert(rng.randrange(len(entries) + 1), other_path)  # the same name twice: the last wins
        if index % 7 == 0:
            rng.shuffle(entries)
        body = b"".join(entries)
        data = b"\x0a" + _varint_bytes(len(body)) + body
        assert assert_agrees(decoder, data) is not None
        used_runs += bool(decoder._runs)
    assert used_runs > 300


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@pytest.mark.parametrize(("mode", "expected"), [
    ("none", "/a/../admin//x"), ("base", "/admin//x"), ("merge-slashes", "/admin/x"),
])
def test_paths_are_normalized_by_the_mode(mode: str, expected: str) -> None:
    decoder = WireDecoder(VOCABULARY, mode)
    data = _request({"request.path": "/a/../admin//x", "request.url_path": "/a/../admin//x", "t.string": "/a/../b"})
    for _ in range(2):  # decoded, then from the memo
        values = decoder.attributes(data)
        assert values == {"request.path": expected, "request.url_path": expected, "t.string": "/a/../b"}


def test_large_entries_and_runs_are_decoded_each_time_not_remembered() -> None:
    big_headers = {f"h-{i}": "v" * 60 for i in range(40)}  # one entry over MAX_ENTRY_BYTES
    many = {f"x.{i}": "w" * 100 for i in range(60)}  # entries that make a run over MAX_RUN_BYTES
    for attributes in ({**TYPICAL, "request.headers": big_headers}, {**TYPICAL, **many}):
        decoder = WireDecoder(VOCABULARY, max_entries=100, max_runs=2)
        data = _request(attributes)
        for _ in range(3):
            assert assert_agrees(decoder, data) is not None
        assert len(decoder._memo) <= 100 and len(decoder._runs) <= 2
        assert all(len(raw) <= MAX_ENTRY_BYTES for raw in decoder._memo)
        assert all(len(run) <= MAX_RUN_BYTES for run, _, _ in decoder._runs.values())
