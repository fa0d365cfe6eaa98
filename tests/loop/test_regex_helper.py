"""The shared regex helper: RE2 only, errors that say why, a memo that stays small."""

from __future__ import annotations

import pytest

from policy import RegexError, compile_regex, regex_escape
from policy.expr import regex as helper


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(a)\1", "invalid escape sequence"),
    ("(?=a)", "invalid perl operator"),
    ("(?<!a)b", "invalid perl operator"),
    (r"a\Z", "invalid escape sequence"),
    ("[", "missing ]"),
])
def test_what_re2_cannot_run_is_an_error_naming_the_pattern(pattern, reason):
    with pytest.raises(RegexError) as info:
        compile_regex(pattern)
    assert f"error parsing regexp {pattern!r}" in str(info.value) and reason in str(info.value)


def test_go_semantics_for_anchors_and_unicode():
    assert compile_regex("^a$").search("a\n") is None  # Python's re would match before the newline
    assert compile_regex("^.$").search("é")  # one code point, not one byte
    assert compile_regex(regex_escape("a.b (c)*")).fullmatch("a.b (c)*")
    assert compile_regex(regex_escape("a.b")).fullmatch("axb") is None


def test_hostile_inputs_are_linear():
    # Both took seconds with a backtracking engine; a test that hangs is the failure.
    assert compile_regex("^([a-z0-9]+-?)*$").search("a" * 27 + "!") is None
    assert compile_regex("(x+x+)+y").search("x" * 100_000) is None


def test_the_memo_keeps_short_patterns_only_and_stays_bounded():
    long_pattern = "a" * (helper._MEMO_PATTERN_LIMIT + 1)
    assert compile_regex(long_pattern).fullmatch(long_pattern)
    assert long_pattern not in helper._memo
    assert compile_regex("memo-me") is compile_regex("memo-me")
    for i in range(helper._MEMO_ENTRIES + 5):
        compile_regex(f"p{i}")
    assert len(helper._memo) <= helper._MEMO_ENTRIES
