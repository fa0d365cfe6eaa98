"""Mixer's expression language (CEXL) for match conditions and instance fields.

::

    ce = compile_expression('request.headers["x-user"] | "anonymous"', vocabulary,
                            expected=ValueType.STRING)
    ce.referenced      # frozenset({("request.headers", "x-user")})
    ce.evaluate(bag)   # "alice", or "anonymous" when the header is absent

Syntax is Go's expression syntax as Mixer accepts it (``|`` binds like ``+``,
tighter than ``==``), with ``!`` and single-quoted strings from CEL. Reading an
absent attribute or indexing an absent map fails the evaluation
(:class:`AttributeNotFound`) unless a ``|`` supplies a default; a key missing
from a present map reads as ``""``, as in Mixer. See ``checker.FUNCTIONS`` for
the functions.
"""

from __future__ import annotations

from policy.expr.compiler import CompiledExpression, compile_expression
from policy.expr.errors import AttributeNotFound, EvaluationError, ExpressionError

__all__ = [
    "AttributeNotFound",
    "CompiledExpression",
    "EvaluationError",
    "ExpressionError",
    "compile_expression",
]
