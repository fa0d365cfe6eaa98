"""Compile-time checking: names, types, arity, expected result types; columns and messages."""

from __future__ import annotations

import pytest

from policy.attributes import ValueType
from policy.expr import ExpressionError, compile_expression


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        # names
        ("foo.bar == 1", 1, "unknown attribute 'foo.bar'"),
        ('request.size == 1 && nope == "x"', 22, "unknown attribute 'nope'"),
        ('request.headers.foo == "x"', 1, "unknown attribute 'request.headers.foo'; "
         'request.headers is a STRING_MAP: write request.headers["foo"]'),
        ('request.path.foo == "x"', 1, "unknown attribute 'request.path.foo'; request.path is "
         "STRING and has no field 'foo'"),
        ('(request.path).x == "a"', 15, "cannot select '.x' here: only attribute names contain dots"),
        ('ip("1.2.3.4").x', 14, "cannot select '.x' here: only attribute names contain dots"),
        # comparisons
        ("source.ip == 3", 11, "cannot compare IP_ADDRESS with INT64"),
        ('source.ip == "1.2.3.4"', 11, 'cannot compare IP_ADDRESS with STRING (write ip("..."))'),
        ('request.time < "2015-01-02T15:04:35Z"', 14,
         'cannot compare TIMESTAMP with STRING (write timestamp("..."))'),
        ('dnsName("a") == "a"', 14, 'cannot compare DNS_NAME with STRING (write dnsName("..."))'),
        ("3.14 == request.size", 6, "cannot compare DOUBLE with INT64"),
        ("true == 1", 6, "cannot compare BOOL with INT64"),
        ('response.duration == "fast"', 19, "cannot compare DURATION with STRING"),
        ("request.headers == request.headers", 17, "cannot compare STRING_MAP values"),
        ("true < false", 6, "operator < is not defined for BOOL"),
        ("source.ip >= source.ip", 11, "operator >= is not defined for IP_ADDRESS"),
        ("test.bytes > test.bytes", 12, "operator > is not defined for BYTES"),
        # arithmetic, logic
        ("true + 1", 6, "cannot add BOOL and INT64"),
        ("request.time + request.time", 14, "operator + is not defined for TIMESTAMP"),
        ("!request.path", 2, "operator ! needs a BOOL operand, got STRING"),
        ("-request.path", 1, "operator - is not defined for STRING"),
        ("request.path && true", 1, "operator && needs BOOL operands, got STRING"),
        ("true || (1)", 9, "operator || needs BOOL operands, got INT64"),
        ('request.size | "x"', 14, "both sides of | must have the same type, got INT64 and STRING"),
        ("request.size | 1.5", 14, "both sides of | must have the same type, got INT64 and DOUBLE"),
        # indexing
        ("request.size[1]", 13, "cannot index INT64: only STRING_MAP values can be indexed"),
        ('"abc"["a"]', 6, "cannot index STRING: only STRING_MAP values can be indexed"),
        ("request.headers[1]", 17, "map key must be STRING, got INT64"),
        # functions
        ("nope(1)", 1, "unknown function 'nope'"),
        ('request.path.nope("a")', 14, "unknown function 'nope'"),
        ('startsWith(request.path, "a")', 1, "startsWith is a method: write str.startsWith(...)"),
        ('matches("a", request.path)', 1, 'matches is a method: write "regex".matches(str)'),
        ('request.path.match("x")', 14, "match is a function, not a method: write match(...)"),
        ("request.path.size()", 14, "size is a function, not a method: write size(...)"),
        ("match(request.path)", 1, "match takes 2 arguments, got 1"),
        ('request.path.startsWith("a", "b")', 14, "startsWith takes 1 argument, got 2"),
        ("emptyStringMap(1)", 1, "emptyStringMap takes 0 arguments, got 1"),
        ("match(request.path, 1)", 21, "argument 2 of match must be STRING, got INT64"),
        ("size(1)", 6, "argument 1 of size must be STRING or STRING_MAP, got INT64"),
        ('request.size.startsWith("x")', 1, "startsWith needs a STRING receiver, got INT64"),
        ("ip(2)", 4, "argument 1 of ip must be STRING, got INT64"),
        ('conditional(1, "a", "b")', 13, "argument 1 of conditional must be BOOL, got INT64"),
        ('conditional(true, "a", 1)', 1,
         "both branches of conditional must have the same type, got STRING and INT64"),
        ('conditional(true, "a")', 1, "conditional takes 3 arguments, got 2"),
        # constant arguments are converted, and rejected, at compile time
        ('source.ip | ip("10.1.12")', 13, "could not convert 10.1.12 to IP_ADDRESS"),
        ('timestamp("242233")', 1, "could not convert '242233' to TIMESTAMP. expected format: "
         "'2006-01-02T15:04:05Z07:00'"),
        ('dnsName("b..a")', 1, "error converting 'b..a' to dns name: 'empty label'"),
        ('email("foo")', 1, "error converting 'foo' to e-mail: 'missing @ in addr-spec'"),
        ('uri("")', 1, "error converting string to uri: empty string"),
        ('"[".matches(request.path)', 1, "error parsing regexp '[': missing ]: ["),
        # RE2 syntax, as Go's regexp: what it cannot run is an error, never a different match
        (r'"(a)\\1".matches(request.path)', 1, r"error parsing regexp '(a)\\1': invalid escape sequence: \1"),
        ('"(?=a)b".matches(request.path)', 1, "error parsing regexp '(?=a)b': invalid perl operator: (?="),
        # a pattern taken from the request would let a client pick the regex, and its cost
        ("request.path.matches(request.host)", 1,
         'the pattern of matches must be a constant string: write "regex".matches(value)'),
    ],
)
def test_type_errors(vocabulary, text, column, reason):
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, vocabulary)
    assert (info.value.column, info.value.reason) == (column, reason)


@pytest.mark.parametrize(
    ("text", "expected", "result_type", "result"),
    [
        ("request.size", ValueType.INT64, ValueType.INT64, 7),
        ("request.size", ValueType.DOUBLE, ValueType.DOUBLE, 7.0),  # an INT64 may fill a DOUBLE
        ("test.double", ValueType.DOUBLE, ValueType.DOUBLE, 0.5),
        ('dnsName("a.b")', ValueType.STRING, ValueType.STRING, "a.b"),
        ('email("a@b.c")', ValueType.STRING, ValueType.STRING, "a@b.c"),
        ('"1s"', ValueType.DURATION, ValueType.DURATION, __import__("datetime").timedelta(seconds=1)),
        ("request.size", ValueType.ANY, ValueType.INT64, 7),
        ("request.size", None, ValueType.INT64, 7),
    ],
)
def test_expected_types_accepted(vocabulary, evaluate, text, expected, result_type, result):
    compiled = compile_expression(text, vocabulary, expected=expected)
    assert compiled.result_type is result_type
    got, _ = evaluate(text, {"request.size": 7, "test.double": 0.5}, expected=expected)
    assert got == result and type(got) is type(result)


@pytest.mark.parametrize(
    ("text", "expected", "reason"),
    [
        ("request.size", ValueType.STRING, "expression has type INT64, expected STRING"),
        ("test.double", ValueType.INT64, "expression has type DOUBLE, expected INT64"),
        ('request.path == "/"', ValueType.STRING, "expression has type BOOL, expected STRING"),
        ('dnsName("a")', ValueType.IP_ADDRESS, "expression has type DNS_NAME, expected IP_ADDRESS"),
        ('"10"', ValueType.DURATION, "expression has type STRING, expected DURATION"),
    ],
)
def test_expected_type_mismatch(vocabulary, text, expected, reason):
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, vocabulary, expected=expected)
    assert (info.value.column, info.value.reason) == (1, reason)


def test_string_valued_kinds_report_any(vocabulary):
    for text in ('dnsName("a")', 'email("a@b.c")', 'uri("http://a")'):
        assert compile_expression(text, vocabulary).result_type is ValueType.ANY


@pytest.mark.parametrize(
    ("text", "result_type"),
    [('response.duration > "10ms"', ValueType.BOOL), ('"10ms" <= response.duration', ValueType.BOOL),
     ('response.duration | "1s"', ValueType.DURATION),
     ('conditional(request.size > 1, "1s", response.duration)', ValueType.DURATION)],
)
def test_duration_literal_meets_duration_on_either_side(vocabulary, text, result_type):
    assert compile_expression(text, vocabulary).result_type is result_type


def test_conditional_branch_literal_becomes_a_duration(value):
    import datetime as dt

    text = 'conditional(request.size > 1, "1s", response.duration)'
    assert value(text, {"request.size": 2}) == dt.timedelta(seconds=1)


def test_any_attribute_compares_with_anything(value):
    assert value("test.any == 3", {"test.any": 3}) is True
    assert value('test.any == "3"', {"test.any": 3}) is False


def test_a_vocabulary_is_any_mapping():
    compiled = compile_expression("x == 1", {"x": ValueType.INT64})
    assert compiled.referenced == {("x", None)}
    assert compiled.evaluate(__import__("policy.attributes").attributes.AttributeBag({"x": 1}))
