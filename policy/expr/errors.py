"""The expression errors, one tree::

    ValueError
     └── ExpressionError        compile time: syntax, unknown name, arity, type, expected type
    Exception
     └── EvaluationError        run time: a function rejected its input (regex, dnsName, ...)
          └── AttributeNotFound an absent attribute (or map) was read with no ``|`` default

Every message names the expression, so a log line is enough to find the rule.
"""

from __future__ import annotations

from policy.error_base import PolicyError


class ExpressionError(PolicyError, ValueError):
    """An expression that cannot be compiled; ``column`` is 1-based."""

    def __init__(self, expression: str, column: int, reason: str) -> None:
        self.expression = expression
        self.column = column
        self.reason = reason
        super().__init__(f"expression {_quote(expression)}: column {column}: {reason}")

    def __reduce__(self):  # keep pickling (multiprocessing, pytest-xdist) working
        return (type(self), (self.expression, self.column, self.reason))


class EvaluationError(Exception):
    """An expression failed while evaluating against one bag."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"expression {_quote(expression)}: {reason}")

    def __reduce__(self):
        return (type(self), (self.expression, self.reason))


class AttributeNotFound(EvaluationError):
    """An absent attribute (``map_key`` None) or map key was read without a ``|`` default."""

    def __init__(self, expression: str, name: str, map_key: str | None = None) -> None:
        self.name = name
        self.map_key = map_key
        what = name if map_key is None else f"{name}[{_quote(map_key)}]"
        super().__init__(expression, f"lookup failed: '{what}'")

    def __reduce__(self):
        return (type(self), (self.expression, self.name, self.map_key))


def _quote(text: str) -> str:
    """Double-quote ``text`` for a message, escaping only what would confuse a reader."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
