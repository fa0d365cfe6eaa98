"""The syntax tree the parser builds and the checker rewrites.

Every node knows two columns (1-based): ``start``, where its text begins, and
``col``, where an error about it should point (the operator of a binary node,
the name of a call, the ``[`` of an index). The checker fills ``kind``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class Node:
    """Base of all nodes."""

    start: int
    col: int
    kind: Any = field(default=None, init=False)


@dataclass(eq=False, slots=True)
class Literal(Node):
    """A constant: a literal in the text, or a call the checker folded.

    ``duration`` is set on a string literal that also reads as a Go duration
    (``"10ms"``); the checker turns it into a DURATION where one is expected.
    """

    value: Any = None
    literal_kind: Any = None
    duration: _dt.timedelta | None = None


@dataclass(eq=False, slots=True)
class Name(Node):
    """A dotted name as written (``destination.service.host``), not yet resolved."""

    parts: tuple[str, ...] = ()
    grouped: bool = False  # written in parentheses, so ``(a.b).c`` is not the name ``a.b.c``

    @property
    def dotted(self) -> str:
        """The name as one dotted string."""
        return ".".join(self.parts)


@dataclass(eq=False, slots=True)
class Attr(Node):
    """A resolved attribute reference."""

    name: str = ""


@dataclass(eq=False, slots=True)
class Select(Node):
    """``x.field`` on something that is not a name; never valid, kept to report it well."""

    target: Node | None = None
    field_name: str = ""


@dataclass(eq=False, slots=True)
class Index(Node):
    """``target[key]`` on a string map."""

    target: Node | None = None
    key: Node | None = None


@dataclass(eq=False, slots=True)
class Call(Node):
    """``name(args)`` or, with a receiver, ``receiver.name(args)``.

    After checking, ``spec`` is the function's entry in the function table and
    ``args`` starts with the receiver for methods.
    """

    name: str = ""
    receiver: Node | None = None
    args: list[Node] = field(default_factory=list)
    spec: Any = None


@dataclass(eq=False, slots=True)
class Unary(Node):
    """``!x`` or ``-x``."""

    op: str = ""
    operand: Node | None = None


@dataclass(eq=False, slots=True)
class Binary(Node):
    """``left op right`` for ``|| && == != < <= > >= + |``.

    After checking, ``operand_kind`` is the kind both sides share (for the
    comparison the compiler emits).
    """

    op: str = ""
    left: Node | None = None
    right: Node | None = None
    operand_kind: Any = None


def walk(node: Node):
    """Yield ``node`` and every node below it, parents first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, (Index,)):
            stack += [current.key, current.target]
        elif isinstance(current, Select):
            stack.append(current.target)
        elif isinstance(current, Call):
            stack += reversed(current.args)
            if current.receiver is not None:
                stack.append(current.receiver)
        elif isinstance(current, Unary):
            stack.append(current.operand)
        elif isinstance(current, Binary):
            stack += [current.right, current.left]
