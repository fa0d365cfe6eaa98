"""Rego v1 syntax checks that OPA 1.x makes and the embedded engine (rego-cpp) does not.

rego-cpp accepts both Rego v0 and v1. OPA 1.x parses v1 only unless told
``--v0-compatible``, rejecting a policy that still uses v0 forms, so a v0 policy that
loads here would fail on a real OPA. These checks report, like OPA does:

* a rule body not introduced by ``if`` (``allow { ... }``, ``deny[msg] { ... }``,
  ``p = 1 { ... }``, ``else = x { ... }``) — OPA: "`if` keyword is required before
  rule body";
* calls of the built-ins OPA 1.x removed (``any``, ``all``, ``re_match``,
  ``set_diff``, ``net.cidr_overlap``, ``cast_*``) — OPA: "deprecated built-in function".

The scanner skips comments, strings and raw strings and tracks bracket depth, so only
top-level braces count as rule bodies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: Built-ins removed in Rego v1 (OPA's ``ast.DeprecatedBuiltins``).
DEPRECATED_BUILTINS = frozenset({
    "any", "all", "re_match", "set_diff", "net.cidr_overlap", "cast_array", "cast_set", "cast_string",
    "cast_boolean", "cast_null", "cast_object",
})

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<op>:=|==|!=|<=|>=|[{}()\[\],;=<>+\-*/%|&.:!])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)

# A brace after one of these opens a value (object, set, comprehension), not a rule body.
_VALUE_BEFORE = frozenset({":=", "=", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "|", "&",
                           ",", "(", "[", "{", ":", ";", "in", "contains", "not", "some", "every", "with",
                           "as", "default", "if"})


@dataclass(frozen=True)
class SyntaxIssue:
    """One v1 violation: where (1-based line, column) and OPA's wording."""

    line: int
    column: int
    message: str


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def tokens(text: str) -> Iterator[tuple[str, str, int]]:
    """The tokens of a module, as (kind, text, offset), without spaces and comments."""
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            yield kind, match.group(), match.start()


def position(text: str, offset: int) -> tuple[int, int]:
    """The 1-based (line, column) of ``offset`` in ``text``."""
    return _position(text, offset)


def v1_issues(text: str) -> list[SyntaxIssue]:
    """The Rego v0 forms in ``text`` that OPA 1.x rejects (empty when the module is v1-clean)."""
    issues: list[SyntaxIssue] = []
    depth = 0
    previous: str | None = None
    previous_kind = ""
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        token = match.group()
        if kind in ("space", "comment"):
            continue
        if token == "{":
            if depth == 0 and previous is not None and previous not in _VALUE_BEFORE:
                line, column = _position(text, match.start())
                issues.append(SyntaxIssue(line, column, "rego_parse_error: `if` keyword is required before rule body"))
            depth += 1
        elif token in ("(", "["):
            depth += 1
        elif token in ("}", ")", "]"):
            depth = max(depth - 1, 0)
        if kind == "op" and token == "(" and previous_kind == "name" and previous in DEPRECATED_BUILTINS:
            line, column = _position(text, match.start())
            issues.append(SyntaxIssue(line, column, "rego_type_error: deprecated built-in function calls in"
                                                    f" expression: {previous}"))
        previous = token
        previous_kind = kind or ""
    return issues


__all__ = ["DEPRECATED_BUILTINS", "SyntaxIssue", "position", "tokens", "v1_issues"]
