"""Evaluation of every operator, absent attributes, and the ``|`` default."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from policy.expr import AttributeNotFound

UTC = dt.timezone.utc
BAG = {
    "request.size": 10,
    "test.double": 2.5,
    "request.path": "/api/v1",
    "request.host": "example.com",
    "connection.mtls": True,
    "request.time": dt.datetime(2015, 1, 2, 15, 4, 35, tzinfo=UTC),
    "response.duration": dt.timedelta(milliseconds=20),
    "source.ip": ipaddress.ip_address("10.0.0.1"),
    "test.bytes": b"\x01\x02",
    "request.headers": {"x-user": "alice", "x-group": "admin"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("request.size == 10", True), ("request.size != 10", False), ("10 == request.size", True),
        ("request.size < 11", True), ("request.size <= 10", True), ("request.size > 10", False),
        ("request.size >= 10", True), ("test.double > 2.0", True), ("test.double <= 2.5", True),
        ('request.path == "/api/v1"', True), ('request.path != "/api/v1"', False),
        ('request.path < "/b"', True), ('"b" > "a"', True), ('"é" > "z"', True),
        ("connection.mtls == true", True), ("connection.mtls != false", True),
        ('request.time == timestamp("2015-01-02T15:04:35Z")', True),
        ('request.time == timestamp("2015-01-02T16:04:35+01:00")', True),  # same instant
        ('request.time < timestamp("2015-01-02T15:04:36Z")', True),
        ('request.time >= timestamp("2015-01-02T15:04:35Z")', True),
        ('request.time > timestamp("2015-01-02T15:04:35Z")', False),
        ('response.duration > "10ms"', True), ('response.duration == "20ms"', True),
        ('response.duration <= "0.02s"', True), ('"1m" > response.duration', True),
        ('source.ip == ip("10.0.0.1")', True), ('source.ip != ip("10.0.0.2")', True),
        ('source.ip == ip("::ffff:10.0.0.1")', True),  # Go's net.IP.Equal: v4-mapped v6 == v4
        ('test.bytes == test.bytes', True),
        ("!connection.mtls", False), ("!!connection.mtls", True),
        ("true && true", True), ("true && false", False), ("false || true", True),
        ("false || false", False), ("-request.size == -10", True),
        ('request.host + request.path', "example.com/api/v1"),
        ("request.size + 5", 15), ("test.double + 0.5", 3.0),
        ('request.headers["x-user"]', "alice"), ("request.headers['x-group'] == 'admin'", True),
        ('request.headers[request.headers["x-user"] | "none"] | "none"', "none"),
    ],
)
def test_operators(value, text, expected):
    result = value(text, BAG)
    assert result == expected and type(result) is type(expected)


def test_ipv6_attribute(value):
    bag = {"source.ip": ipaddress.ip_address("2001:db8::1")}
    assert value('source.ip == ip("2001:0db8:0:0::1")', bag) is True
    assert value('source.ip == ip("2001:db8::2")', bag) is False
    assert value('source.ip == ip("0.0.0.1")', bag) is False


def test_absent_attribute_fails_without_default(evaluate):
    with pytest.raises(AttributeNotFound) as info:
        evaluate('request.auth.principal == "user1"')
    assert (info.value.name, info.value.map_key) == ("request.auth.principal", None)
    assert str(info.value) == (
        'expression "request.auth.principal == \\"user1\\"": lookup failed: '
        "'request.auth.principal'"
    )


def test_absent_map_fails_without_default(evaluate):
    with pytest.raises(AttributeNotFound) as info:
        evaluate('request.headers["x-user"] == "alice"', {})
    assert (info.value.name, info.value.map_key) == ("request.headers", None)
    assert "lookup failed: 'request.headers'" in str(info.value)


@pytest.mark.parametrize("values", [{"request.headers": {"other": "x"}}, {"request.headers": {}}])
def test_absent_key_of_a_present_map_is_empty(evaluate, values):
    # Mixer's IL: ANLookup/NLookup push "" for a key the map lacks (il/interpreter), so
    # `!= "secret"` holds for a request without the header; only an absent map fails.
    assert evaluate('request.headers["x-user"]', values) == ("", [("request.headers", "x-user")])
    assert evaluate('request.headers["x-user"] != "secret"', values)[0] is True


def test_absent_computed_key_is_empty(evaluate):
    result, reads = evaluate("request.headers[request.path]",
                             {"request.headers": {}, "request.path": "/p"})
    assert result == "" and ("request.headers", "/p") in reads


@pytest.mark.parametrize(
    ("values", "expected"),
    [({}, "nobody"), ({"request.auth.principal": "u"}, "u"), ({"request.auth.principal": ""}, "")],
)
def test_default_on_attribute(value, values, expected):
    assert value('request.auth.principal | "nobody"', values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "unknown"),
        ({"source.labels": {"svc": "s"}}, "s"),
        ({"source.labels": {"app": "a", "svc": "s"}}, "a"),
        ({"source.labels": {"other": "o"}}, "unknown"),
    ],
)
def test_default_chain_on_map_keys(value, values, expected):
    assert value('source.labels["app"] | source.labels["svc"] | "unknown"', values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "foo"),  # map absent
        ({"request.headers": {"k": "v"}}, "foo"),  # key attribute absent
        ({"request.path": "k"}, "foo"),  # map absent, key present
        ({"request.headers": {"k": "v"}, "request.path": "x"}, "foo"),  # key not in map
        ({"request.headers": {"k": "v"}, "request.path": "k"}, "v"),
    ],
)
def test_default_on_computed_key(value, values, expected):
    # Mixer's test data: `ar[as] | "foo"` defaults when the map, the key or the entry is absent.
    assert value('request.headers[request.path] | "foo"', values) == expected


def test_default_keeps_false_zero_and_empty_values(value):
    assert value("connection.mtls | true", {"connection.mtls": False}) is False
    assert value("request.size | 200", {"request.size": 0}) == 0
    assert value("request.size | 200") == 200


def test_default_of_whole_map(value):
    assert value("request.headers | emptyStringMap()") == {}
    assert value('(request.headers | emptyStringMap())["a"] | "none"') == "none"
    assert value('(request.headers | test.other_map)["a"]', {"test.other_map": {"a": "o"}}) == "o"


def test_indexing_a_computed_map_that_lacks_the_key(evaluate):
    assert evaluate('(request.headers | test.other_map)["a"]', {"test.other_map": {}})[0] == ""
    with pytest.raises(AttributeNotFound) as info:
        evaluate('(request.headers | test.other_map)["a"]', {})
    assert info.value.name == "test.other_map"


def test_default_on_other_types(value):
    t = dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert value('request.time | timestamp("2015-01-02T15:04:35Z")') == dt.datetime(
        2015, 1, 2, 15, 4, 35, tzinfo=UTC)
    assert value('request.time | timestamp("2015-01-02T15:04:35Z")', {"request.time": t}) == t
    assert value('source.ip | ip("::1")') == ipaddress.ip_address("::1")
    assert value('response.duration | "19ms"') == dt.timedelta(milliseconds=19)
    assert value("test.double | 4.5") == 4.5


def test_default_covers_only_attributes_and_lookups_on_its_left(value):
    # Mixer's compiler evaluates a call or operator left of `|` as usual: it has a value or
    # fails (mixer/pkg/lang/compiler/compiler.go generateFunction), absence included.
    for text in ('request.path.startsWith("/a") | false', "(request.size > 3) | true",
                 'toLower(request.host) | "none"'):
        with pytest.raises(AttributeNotFound):
            value(text)
    assert value('request.path.startsWith("/a") | false', {"request.path": "/a/b"}) is True
    assert value('toLower(request.host) | "none"', {"request.host": "A"}) == "a"
    assert value('request.headers["x"] | "none"', {"request.headers": {}}) == "none"
    assert value('request.headers["x"] | "none"') == "none"


def test_default_in_a_comparison(value):
    # Istio's documented idiom.
    assert value('(request.auth.principal | "nobody") == "user1"') is False
    assert value('(request.auth.principal | "nobody") == "user1"',
                 {"request.auth.principal": "user1"}) is True


def test_default_with_constant_left_never_reads_right(evaluate):
    result, reads = evaluate('"fixed" | request.path')
    assert (result, reads) == ("fixed", [])


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ('false && request.path == "x"', {}, False),
        ('true || request.path == "x"', {}, True),
        ('request.size > 100 && request.auth.principal == "x"', {"request.size": 1}, False),
        ('request.size < 100 || request.auth.principal == "x"', {"request.size": 1}, True),
    ],
)
def test_logical_operators_short_circuit(evaluate, text, values, expected):
    result, reads = evaluate(text, values)
    assert result is expected
    assert ("request.path", None) not in reads and ("request.auth.principal", None) not in reads


def test_logical_operators_evaluate_the_right_side_when_needed(evaluate):
    with pytest.raises(AttributeNotFound):
        evaluate('true && request.path == "x"')
    result, _ = evaluate('request.size > 100 || request.path == "/x"',
                         {"request.size": 1, "request.path": "/x"})
    assert result is True


def test_repeated_reads_are_made_once(evaluate):
    result, reads = evaluate("request.size > 1 && request.size < 100 && request.size != 50",
                             {"request.size": 10})
    assert result is True
    assert reads == [("request.size", None)]


def test_a_missing_key_is_empty_yet_still_absent_for_a_default(value):
    # The same key read plainly ("") and under `|` (absent: the default), in one expression.
    text = 'request.headers["k"] == "" && (request.headers["k"] | "x") == "x"'
    assert value(text, {"request.headers": {}}) is True
    assert value(text, {"request.headers": {"k": "v"}}) is False
