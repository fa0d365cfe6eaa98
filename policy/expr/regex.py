"""Regular expressions from config and expressions, compiled by RE2 (as Mixer and Istio do).

Every pattern a config supplies (CEXL ``matches``, listchecker ``regex`` entries, RBAC
and QuotaSpec patterns, rate-limit keys) goes through :func:`compile_regex`, never
Python's backtracking ``re``: RE2 matches in time linear in the text, so no pattern
and no request value can hold the event loop (``^([a-z0-9]+-?)*$`` over 27 characters
took 7.8 s with ``re``, ``.*admin.*`` over a 64 KiB header 4.8 s; both are microseconds
here).

The syntax is RE2's, which is Go's ``regexp``: the references' own. A pattern RE2
cannot compile (backreferences ``\\1``, lookaround ``(?=``, ``(?<!``, Python-only
escapes like ``\\Z``) raises :class:`RegexError` — a config error, never a silently
different match.
"""

from __future__ import annotations

from typing import Protocol

import re2

__all__ = ["Regex", "RegexError", "compile_regex", "escape"]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is raised to the caller, who names the file and field


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message quotes the pattern and RE2's reason."""


class Regex(Protocol):
    """What a compiled pattern offers (RE2's ``_Regexp``)."""

    pattern: str

    def search(self, text: str) -> object | None:
        """The first match anywhere in ``text`` (Go's ``MatchString``), or None."""

    def fullmatch(self, text: str) -> object | None:
        """A match of the whole of ``text``, or None."""

    def match(self, text: str) -> object | None:
        """A match at the start of ``text``, or None."""


#: Patterns up to this many characters are memoized (at most ``_MEMO_ENTRIES`` of them), so
#: the memo stays small however long the patterns a config (or a list provider) sends.
_MEMO_PATTERN_LIMIT = 4096
_MEMO_ENTRIES = 1024
_memo: dict[str, Regex] = {}


def compile_regex(pattern: str) -> Regex:
    """Compile ``pattern`` with RE2 (short ones memoized); raise :class:`RegexError` when RE2 rejects it."""
    compiled = _memo.get(pattern)
    if compiled is not None:
        return compiled
    compiled = _compile(pattern)
    if len(pattern) <= _MEMO_PATTERN_LIMIT:
        if len(_memo) >= _MEMO_ENTRIES:
            _memo.clear()
        _memo[pattern] = compiled
    return compiled


def _compile(pattern: str) -> Regex:
    if not isinstance(pattern, str):
        raise RegexError(f"a regular expression must be a string, got {type(pattern).__name__}")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"error parsing regexp {pattern!r}: {reason}") from None


def escape(text: str) -> str:
    """``text`` as a pattern that matches exactly it."""
    return re2.escape(text)
