"""Parsing: literals, names, precedence, and syntax errors with their columns."""

from __future__ import annotations

import datetime as dt

import pytest

from policy.attributes import ValueType
from policy.expr import ExpressionError, compile_expression


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"abc"', "abc"),
        ("'abc'", "abc"),
        ("`a\\nb`", "a\\nb"),  # raw string: no escapes
        (r'"a\"b"', 'a"b'),
        (r"'it\'s'", "it's"),
        (r'"\t\n\\"', "\t\n\\"),
        (r'"\x41\u00e9\U0001F600\101"', "Aé\U0001F600A"),
        ('""', ""),
        ("42", 42),
        ("007", 7),
        ("-5", -5),
        ("-9223372036854775808", -(2**63)),
        ("9223372036854775807", 2**63 - 1),
        ("1.5", 1.5),
        (".5", 0.5),
        ("2.", 2.0),
        ("1e3", 1000.0),
        ("-2.5e-1", -0.25),
        ("true", True),
        ("false", False),
        ("TRUE", True),  # Mixer lower-cases true/false identifiers
        ("(((1)))", 1),
    ],
)
def test_literals(value, text, expected):
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "result_type"),
    [('"a"', ValueType.STRING), ("1", ValueType.INT64), ("1.0", ValueType.DOUBLE),
     ("true", ValueType.BOOL), ("request.headers", ValueType.STRING_MAP),
     ("request.time", ValueType.TIMESTAMP), ("response.duration", ValueType.DURATION),
     ("source.ip", ValueType.IP_ADDRESS), ("test.bytes", ValueType.BYTES)],
)
def test_result_types(vocabulary, text, result_type):
    assert compile_expression(text, vocabulary).result_type is result_type


def test_dotted_names_are_one_attribute(value):
    assert value("destination.service.host", {"destination.service.host": "h"}) == "h"
    assert value("source.workload.name", {"source.workload.name": "w"}) == "w"


def test_whitespace_and_newlines_are_ignored(value):
    assert value(' request.size\n  ==\t3 ', {"request.size": 3}) is True


def test_or_default_binds_tighter_than_comparison(value):
    # Go precedence: | is at the level of +, above ==; so this is (principal | "nobody") == "user1"
    assert value('request.auth.principal | "nobody" == "nobody"') is True
    assert value('request.auth.principal | "nobody" == "nobody"',
                 {"request.auth.principal": "x"}) is False


def test_and_binds_tighter_than_or(value):
    assert value("true || false && false") is True
    assert value("(true || false) && false") is False


def test_comparison_binds_tighter_than_and(value):
    assert value("request.size > 1 && request.size < 5", {"request.size": 3}) is True


def test_plus_and_default_are_left_associative(value):
    assert value('request.path | "a" + "b"') == "ab"  # ("path" | "a") + "b"
    assert value('request.path | "a" + "b"', {"request.path": "/x"}) == "/xb"


def test_not_binds_tighter_than_comparison_operands(value):
    assert value("!true == false") is True  # (!true) == false


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("a = 2", 3, "syntax error: unexpected character '='"),
        ("@23", 1, "syntax error: unexpected character '@'"),
        ("request.size ==", 16, "syntax error: unexpected end of expression"),
        ("(request.size", 14, "syntax error: unexpected end of expression"),
        ("request.size == == 1", 17, "syntax error: unexpected '=='"),
        ("request.size - 1", 14, "syntax error: unexpected '-'"),
        ("1 2", 3, "syntax error: unexpected '2'"),
        ('f(1,)', 5, "syntax error: unexpected ')'"),
        ('"abc', 1, "syntax error: unexpected character '\"'"),
        ("", 1, "empty expression"),
        ("   ", 1, "empty expression"),
        (r'"a\qb"', 3, "invalid escape sequence '\\q'"),
        ("9223372036854775808", 1, "integer literal out of range"),
        ("-9223372036854775809", 2, "integer literal out of range"),
    ],
)
def test_syntax_errors(vocabulary, text, column, reason):
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, vocabulary)
    assert (info.value.column, info.value.reason) == (column, reason)
    assert info.value.expression == text


def test_error_message_format(vocabulary):
    with pytest.raises(ExpressionError) as info:
        compile_expression("source.ip == 3", vocabulary)
    assert str(info.value) == (
        'expression "source.ip == 3": column 11: cannot compare IP_ADDRESS with INT64'
    )
    assert isinstance(info.value, ValueError)


def test_duration_literal_is_a_string_elsewhere(value):
    assert value('"10ms"') == "10ms"
    assert value('"10ms"', expected=ValueType.DURATION) == dt.timedelta(milliseconds=10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", dt.timedelta(0)), ("1h30m", dt.timedelta(hours=1, minutes=30)),
     ("1.5s", dt.timedelta(seconds=1.5)), ("-2m", dt.timedelta(minutes=-2)),
     ("300us", dt.timedelta(microseconds=300)), ("2000ns", dt.timedelta(microseconds=2)),
     (".5h", dt.timedelta(minutes=30))],
)
def test_go_duration_literals(value, text, expected):
    assert value(f'"{text}"', expected=ValueType.DURATION) == expected


@pytest.mark.parametrize("text", ["1", "s", "1x", "1.s5", "", "1 s", ".s"])
def test_strings_that_are_not_durations(vocabulary, text):
    with pytest.raises(ExpressionError, match="expression has type STRING, expected DURATION"):
        compile_expression(f'"{text}"', vocabulary, expected=ValueType.DURATION)


def test_columns_count_through_line_breaks(vocabulary):
    # YAML block scalars give multi-line expressions; the column indexes the whole text.
    text = 'request.size == 1 &&\n  source.ip == "x"'
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, vocabulary)
    assert info.value.column == text.index("==", 20) + 1
    with pytest.raises(ExpressionError) as info:
        compile_expression("request.size ==\n  @", vocabulary)
    assert (info.value.column, info.value.reason) == (19, "syntax error: unexpected character '@'")
