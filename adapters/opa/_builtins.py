"""Load-time checks that keep the embedded engine from failing open, and string canonicalisation.

**Functions the engine lacks.** rego-cpp evaluates a call of a function it does not
implement (``net.cidr_contains``, ``http.send`` ...) as *undefined*, so a rule such as
``allow if not deny`` would allow where OPA denies. :func:`unknown_calls` finds every
call in the modules that is neither one of the engine's built-ins (asked of the engine
itself) nor a function the policy defines, and the loader refuses the policy, naming
the function and ``file:line:column``. OPA refuses a call of an undefined function at
compile time too; a built-in OPA has and rego-cpp lacks needs a remote OPA (``url``).

**One spelling per string.** rego-cpp compares strings by their escaped spelling:
``"é"`` and ``"\\u00e9"`` (or ``"/"`` and ``"\\/"``) are different strings to it, though
they are one string in OPA. :func:`canonical_literals` rewrites every double-quoted
literal of a module to one spelling (JSON with only ``"``, ``\\`` and control
characters escaped, non-ASCII kept), and :func:`engine_string` gives an input string
the same spelling, so input, data and literals compare as in OPA.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from adapters.opa._syntax import position, tokens

#: Keywords that may stand before ``(`` without being a call.
_KEYWORDS = frozenset({"not", "some", "every", "in", "if", "contains", "else", "with", "as", "default",
                       "import", "package", "true", "false", "null"})

#: Tokens after which a name followed by ``(`` at the top level is a call in a rule's value,
#: not the head of a function definition.
_VALUE_BEFORE = frozenset({":=", "=", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "|", "&",
                           ",", ":", ";", "in", "contains", "not", "some", "every", "with", "as", "if", "else"})

#: Built-ins the engine runs although it does not list them as built-ins.
_ENGINE_EXTRAS = frozenset({"print"})


@dataclass(frozen=True)
class UnknownCall:
    """A call of a function that is neither an engine built-in nor defined by the policy."""

    file: str
    line: int
    column: int
    name: str

    def __str__(self) -> str:
        return (f"{self.file}:{self.line}:{self.column}: {self.name} is not a built-in function of the embedded"
                f" engine (rego-cpp) nor a function defined by the policy")


@dataclass
class _Module:
    name: str
    package: str
    imports: dict[str, str]
    defined: set[str]
    calls: list[tuple[str, int, int]]


def _function_head(items: list[tuple[str, str, int]], index: int) -> str | None:
    """The dotted name of the function a rule head at ``index`` defines, or None (not a function)."""
    parts = [items[index][1]]
    at = index + 1
    while at + 2 < len(items) and items[at][1] == "[" and items[at + 1][0] == "string" and items[at + 2][1] == "]":
        try:
            parts.append(json.loads(items[at + 1][1]))
        except ValueError:
            return None
        at += 3
    if at < len(items) and items[at][1] == "(":
        return ".".join(parts)
    return None


def _scan(name: str, text: str) -> _Module:
    package = ""
    imports: dict[str, str] = {}
    defined: set[str] = set()
    calls: list[tuple[str, int, int]] = []
    depth = 0
    previous = ""
    items = list(tokens(text))
    for index, (kind, token, offset) in enumerate(items):
        following = items[index + 1][1] if index + 1 < len(items) else ""
        if kind == "name" and previous == "package":
            package = token
        elif kind == "name" and previous == "import":
            alias = token.rsplit(".", 1)[-1]
            if index + 2 < len(items) and following == "as":
                alias = items[index + 2][1]
            if token.startswith("data."):
                imports[alias] = token[len("data."):]
        elif kind == "name" and depth == 0 and previous not in _VALUE_BEFORE and token not in _KEYWORDS:
            head = _function_head(items, index)  # a rule head: foo(x), foo.bar(x), foo["bar"](x)
            if head is not None:
                defined.add(head)
        elif kind == "name" and following == "(" and token not in _KEYWORDS:
            if token == "set" and index + 2 < len(items) and items[index + 2][1] == ")":
                pass  # set(): the empty set, not a call
            else:
                calls.append((token, *position(text, offset)))
        if token in ("{", "(", "["):
            depth += 1
        elif token in ("}", ")", "]"):
            depth = max(depth - 1, 0)
        previous = token
    return _Module(name, package, imports, defined, calls)


def unknown_calls(modules: Iterable[tuple[str, str]], is_builtin: Callable[[str], bool]) -> list[UnknownCall]:
    """Calls in ``modules`` (name, text) of functions neither the engine nor the policy defines."""
    scanned = [_scan(name, text) for name, text in modules]
    functions = {f"{m.package}.{f}" for m in scanned for f in m.defined}
    found: list[UnknownCall] = []
    for module in scanned:
        for call, line, column in module.calls:
            head, _, rest = call.partition(".")
            if call in module.defined or f"{module.package}.{call}" in functions:
                continue
            if head == "data" and rest in functions:
                continue
            if head in module.imports and f"{module.imports[head]}.{rest}" in functions:
                continue
            if call in _ENGINE_EXTRAS or is_builtin(call):
                continue
            found.append(UnknownCall(module.name, line, column, call))
    return found


def engine_string(value: str) -> str:
    """``value`` in the engine's one spelling (see the module docstring)."""
    if '"' in value or "\\" in value or not value.isprintable():
        return json.dumps(value, ensure_ascii=False)[1:-1]
    return value


def canonical_literals(text: str) -> str:
    """``text`` with every double-quoted string literal in the engine's one spelling."""
    out: list[str] = []
    last = 0
    for kind, token, start in tokens(text):
        if kind == "string" and "\\" in token:
            try:
                value = json.loads(token)
            except ValueError:
                continue  # the engine reports the bad literal itself
            out.append(text[last:start])
            out.append(json.dumps(value, ensure_ascii=False))
            last = start + len(token)
    out.append(text[last:])
    return "".join(out)


__all__ = ["UnknownCall", "canonical_literals", "engine_string", "unknown_calls"]
