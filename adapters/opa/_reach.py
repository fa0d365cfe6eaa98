"""Which parts of ``input`` a policy can reach, found by scanning its modules when it compiles.

The adapter hands the policy only the parts of OPA-Envoy's input document it can
reach, so the decision cache keys on those alone. The rule, applied to every module:

* each reference to ``input`` is followed while its steps are constant: ``.name`` and
  ``["string"]``; the path reached is that constant prefix (``input.attributes.request
  .http.headers["x-user"]`` reaches that one header; ``input.attributes.request.http
  .headers[k]`` and ``count(input.attributes.request.http.headers)`` reach every header);
* ``import input.a.b`` (``as x``) makes ``b`` (``x``) stand for ``input.a.b``, followed the
  same way;
* ``input`` alone (passed whole to a function, ``walk``, ``json.marshal``, ``input[k]``),
  ``with input... as``, ``import input`` and template strings (``$"...{expr}"``, whose
  expressions the scan does not enter) reach the whole document: :data:`WHOLE`.

A path reached gives the policy everything under it, exactly as OPA-Envoy builds it; a
policy never sees less than OPA-Envoy's document for any path it can name. Strings and
comments are skipped (:func:`adapters.opa._syntax.tokens`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from adapters.opa._syntax import tokens

#: The whole input document is reachable.
WHOLE = None

Path = tuple[str, ...]


def _string(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _follow(toks: list[tuple[str, str, int]], at: int, base: Path) -> Path:
    """The constant path a reference starting with ``base`` reaches, its next token at ``at``."""
    path = list(base)
    while at < len(toks):
        kind, text, _ = toks[at]
        if text == "[" and at + 2 < len(toks) and toks[at + 1][0] == "string" and toks[at + 2][1] == "]":
            key = _string(toks[at + 1][1])
            if key is None:
                break
            path.append(key)
            at += 3
        elif text == "." and at + 1 < len(toks) and toks[at + 1][0] == "name":
            path.extend(toks[at + 1][1].split("."))
            at += 2
        else:
            break
    return tuple(path)


def module_reach(text: str) -> set[Path] | None:
    """The input paths one module reaches; None (:data:`WHOLE`) when it may reach all of ``input``."""
    toks = list(tokens(text))
    aliases: dict[str, Path] = {}
    declaring: set[int] = set()  # the tokens of import declarations, which are no references
    for i, (kind, token, _) in enumerate(toks):
        if kind == "name" and token == "import" and i + 1 < len(toks):
            target = toks[i + 1][1].split(".")
            if target[0] != "input":
                continue
            if len(target) == 1:
                return WHOLE
            alias = target[-1]
            declaring.add(i + 1)
            if i + 3 < len(toks) and toks[i + 2][1] == "as":
                alias = toks[i + 3][1]
                declaring.add(i + 3)
            aliases[alias] = tuple(target[1:])
    reached: set[Path] = set()
    for i, (kind, token, _) in enumerate(toks):
        if token == "$" and i + 1 < len(toks) and toks[i + 1][0] in ("string", "raw"):
            return WHOLE  # a template string ($"...{expr}..."): its expressions are not scanned
        if kind != "name":
            continue
        parts = token.split(".")
        if i in declaring:
            continue
        if parts[0] == "input":
            base: Path = ()
        elif parts[0] in aliases:
            base = aliases[parts[0]]
        else:
            continue
        if parts[0] == "input" and i > 0 and toks[i - 1][1] == "with":
            return WHOLE
        path = _follow(toks, i + 1, base + tuple(parts[1:]))
        if not path:
            return WHOLE
        reached.add(path)
    return reached


def minimal(paths: Iterable[Path]) -> frozenset[Path]:
    """``paths`` without those under another one (``a.b`` covers ``a.b.c``)."""
    kept: list[Path] = []
    for path in sorted(set(paths), key=len):
        if not any(path[:len(p)] == p for p in kept):
            kept.append(path)
    return frozenset(kept)


def policy_reach(modules: Iterable[tuple[str, str]]) -> frozenset[Path] | None:
    """The input paths a policy (its ``(name, text)`` modules) reaches; None when it may reach everything."""
    reached: set[Path] = set()
    for _, text in modules:
        found = module_reach(text)
        if found is WHOLE:
            return WHOLE
        reached |= found
    return minimal(reached)


__all__ = ["WHOLE", "minimal", "module_reach", "policy_reach"]
