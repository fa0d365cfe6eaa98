"""The attribute layer: vocabulary, typed bag, recording of reads."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from policy.attributes import (
    AttributeBag,
    LazyReferences,
    Presence,
    RecordingBag,
    ValueType,
    VocabularyError,
    conforms,
    references,
    standard_vocabulary,
    type_name,
)


def test_standard_vocabulary_has_istio_names_with_types():
    vocabulary = standard_vocabulary()
    assert vocabulary["source.ip"] is ValueType.IP_ADDRESS
    assert vocabulary["request.headers"] is ValueType.STRING_MAP
    assert vocabulary["request.time"] is ValueType.TIMESTAMP
    assert vocabulary["response.duration"] is ValueType.DURATION
    assert vocabulary["destination.port"] is ValueType.INT64
    assert vocabulary["connection.mtls"] is ValueType.BOOL
    for prefix in ("source.", "destination.", "request.", "request.auth.", "response.", "connection.",
                   "context.", "api."):
        assert any(name.startswith(prefix) for name in vocabulary), prefix


def test_merging_adds_names_and_rejects_conflicts():
    vocabulary = standard_vocabulary().merged({"my.attr": "int64"})
    assert vocabulary["my.attr"] is ValueType.INT64
    assert vocabulary.merged({"my.attr": ValueType.INT64})["my.attr"] is ValueType.INT64
    with pytest.raises(VocabularyError, match="my.attr.*STRING.*INT64"):
        vocabulary.merged({"my.attr": "STRING"}, source="plugin x")
    with pytest.raises(VocabularyError, match="unknown type 'FLOAT'"):
        vocabulary.merged({"other": "FLOAT"})


def test_bag_drops_none_and_answers_none_for_absent():
    bag = AttributeBag({"a": "x", "b": None, "m": {"k": "v"}})
    assert "b" not in bag and len(bag) == 2
    assert bag.get("a") == "x" and bag.get("b") is None
    assert bag.get_key("m", "k") == "v" and bag.get_key("m", "nope") is None
    assert bag.get_key("missing", "k") is None
    assert bag.with_values({"c": 1, "a": None})["c"] == 1


def test_recording_bag_records_reads_present_and_absent():
    bag = AttributeBag({"source.ip": ipaddress.ip_address("10.0.0.1"), "request.headers": {"x-user": "ann"}})
    recording = RecordingBag(bag)
    assert recording.get("source.ip") == ipaddress.ip_address("10.0.0.1")
    assert recording.get("source.user") is None
    assert recording.get_key("request.headers", "x-user") == "ann"
    assert recording.get_key("request.headers", "x-other") is None
    assert recording.shape() == {("source.ip", None), ("source.user", None), ("request.headers", "x-user"),
                                 ("request.headers", "x-other")}
    refs = {(r.name, r.map_key): r.presence for r in references(bag, recording.reads)}
    assert refs == {
        ("source.ip", None): Presence.EXACT,
        ("source.user", None): Presence.ABSENT,
        ("request.headers", "x-user"): Presence.EXACT,
        ("request.headers", "x-other"): Presence.ABSENT,
    }


def test_a_key_read_in_an_absent_map_is_reported_as_the_map_absent():
    # Mixer's bag reported the map, not the key: "map[key] ABSENT" would claim a map without
    # the key, which reads "" and decides differently from no map at all.
    bag = AttributeBag({"source.ip": "10.0.0.1"})
    recording = RecordingBag(bag)
    assert recording.get_key("request.headers", "x-user") is None
    assert recording.get_key("request.headers", "x-other") is None
    refs = [(r.name, r.map_key, r.presence) for r in references(bag, recording.reads)]
    assert refs == [("request.headers", None, Presence.ABSENT)]


def test_lazy_references_resolve_once_and_let_go_of_the_request():
    bag = AttributeBag({"source.ip": "10.0.0.1", "request.headers": {"x-user": "ann"}})
    recording = RecordingBag(bag)
    recording.get("source.ip")
    recording.get_key("request.headers", "x-user")
    lazy = LazyReferences(bag.raw, recording.reads)
    assert list(lazy) == references(bag, recording.reads)
    assert len(lazy) == 2 and lazy[0].name == "request.headers" and lazy == references(bag, recording.reads)
    assert lazy._values is None and lazy._reads is None  # the request is no longer held


@pytest.mark.parametrize("value, value_type, ok", [
    ("s", ValueType.STRING, True),
    (1, ValueType.INT64, True),
    (True, ValueType.INT64, False),
    (1.5, ValueType.DOUBLE, True),
    (dt.datetime.now(dt.timezone.utc), ValueType.TIMESTAMP, True),
    (dt.timedelta(seconds=1), ValueType.DURATION, True),
    (ipaddress.ip_address("::1"), ValueType.IP_ADDRESS, True),
    ("10.0.0.1", ValueType.IP_ADDRESS, False),
    ({"a": "b"}, ValueType.STRING_MAP, True),
    (b"x", ValueType.BYTES, True),
])
def test_conforms(value, value_type, ok):
    assert conforms(value, value_type) is ok


def test_type_name_names_attribute_types():
    assert type_name(True) == "BOOL"
    assert type_name(3) == "INT64"
    assert type_name(ipaddress.ip_address("1.2.3.4")) == "IP_ADDRESS"
