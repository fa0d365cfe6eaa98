"""Type checking: resolve names against the vocabulary, type every node, fold constant calls.

Types follow Mixer's checker (``mixer/pkg/lang/ast/expr.go`` and ``func.go``):
operands of ``==``, ``!=``, ``|`` and the branches of ``conditional`` must have
the same type; ``<``-family and ``+`` only where Mixer's compiler emits them.
``dnsName``, ``email`` and ``uri`` produce their own kinds (compared with
Mixer's normalising equality), which leave an expression as ValueType.ANY.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from policy.attributes import ValueType
from policy.expr import functions as fn
from policy.expr.errors import ExpressionError
from policy.expr.nodes import Attr, Binary, Call, Index, Literal, Name, Node, Select, Unary

Kind = enum.Enum(
    "Kind",
    [v.name for v in ValueType] + ["DNS_NAME", "EMAIL_ADDRESS", "URI"],
)
Kind.__doc__ = "A ValueType, or one of the string-valued kinds Mixer types apart (DNS_NAME, ...)."

S, I, D, B = Kind.STRING, Kind.INT64, Kind.DOUBLE, Kind.BOOL
ORDERED = {S, I, D, Kind.TIMESTAMP, Kind.DURATION, Kind.DNS_NAME, Kind.EMAIL_ADDRESS, Kind.URI}
ADDABLE = {S, I, D}
_INT64_MAX = 2**63 - 1
_HINTS = {Kind.IP_ADDRESS: "ip", Kind.TIMESTAMP: "timestamp", Kind.DNS_NAME: "dnsName",
          Kind.EMAIL_ADDRESS: "email", Kind.URI: "uri"}


def kind_of(value_type: ValueType) -> Kind:
    """The kind of an attribute type."""
    return Kind[value_type.name]


def value_type_of(kind: Kind) -> ValueType:
    """The ValueType an expression of ``kind`` reports (the string-valued kinds become ANY)."""
    return ValueType.__members__.get(kind.name, ValueType.ANY)


@dataclass(frozen=True, slots=True)
class Function:
    """One overload in the function table.

    ``params`` includes the receiver for methods. ``inline`` is a Python template
    over the argument expressions; otherwise the compiler calls ``impl``.
    ``fallible`` functions may raise :class:`~policy.expr.functions.FunctionError`.
    """

    name: str
    params: tuple[Kind, ...]
    result: Kind
    impl: Callable
    method: bool = False
    inline: str | None = None
    fallible: bool = False


def _fns(*specs: Function) -> dict[str, list[Function]]:
    table: dict[str, list[Function]] = {}
    for spec in specs:
        table.setdefault(spec.name, []).append(spec)
    return table


def _conditional(c, a, b):
    return a if c else b


#: Mixer's function table (externs.go + func.go intrinsics), plus ``reverse`` from its CEL mode.
FUNCTIONS: Mapping[str, list[Function]] = _fns(
    Function("match", (S, S), B, fn.match),
    Function("matches", (S, S), B, fn.matches, method=True, fallible=True),
    Function("startsWith", (S, S), B, str.startswith, method=True, inline="{0}.startswith({1})"),
    Function("endsWith", (S, S), B, str.endswith, method=True, inline="{0}.endswith({1})"),
    Function("ip", (S,), Kind.IP_ADDRESS, fn.ip, fallible=True),
    Function("timestamp", (S,), Kind.TIMESTAMP, fn.timestamp, fallible=True),
    Function("dnsName", (S,), Kind.DNS_NAME, fn.dns_name, fallible=True),
    Function("email", (S,), Kind.EMAIL_ADDRESS, fn.email, fallible=True),
    Function("uri", (S,), Kind.URI, fn.uri, fallible=True),
    Function("emptyStringMap", (), Kind.STRING_MAP, lambda: fn.EMPTY_STRING_MAP),
    Function("conditionalString", (B, S, S), S, _conditional),
    Function("toLower", (S,), S, str.lower, inline="{0}.lower()"),
    Function("size", (S,), I, fn.size),
    Function("size", (Kind.STRING_MAP,), I, len, inline="len({0})"),
    Function("reverse", (S,), S, lambda s: s[::-1], inline="{0}[::-1]"),
    Function("reverse", (S,), S, lambda s: s[::-1], method=True, inline="{0}[::-1]"),
)
#: ``conditional(bool, T, T)``: generic, so checked apart from the table.
CONDITIONAL = Function("conditional", (B, Kind.ANY, Kind.ANY), Kind.ANY, _conditional)


class Checker:
    """Checks one expression's tree against a vocabulary."""

    def __init__(self, text: str, vocabulary: Mapping[str, ValueType]) -> None:
        self.text = text
        self.vocabulary = vocabulary

    def error(self, column: int, reason: str) -> ExpressionError:
        """An :class:`ExpressionError` for this expression."""
        return ExpressionError(self.text, column, reason)

    def check(self, node: Node) -> Node:
        """Return ``node`` resolved and typed (``kind`` set on every node)."""
        method = getattr(self, "_" + type(node).__name__.lower())
        out = method(node)
        assert out.kind is not None
        return out

    # --- leaves ---------------------------------------------------------------------------

    def _literal(self, node: Literal) -> Node:
        if node.kind is None:
            node.kind = kind_of(node.literal_kind)
            if node.kind is I and node.value > _INT64_MAX:
                raise self.error(node.start, "integer literal out of range")
        return node

    def _name(self, node: Name) -> Node:
        name = node.dotted
        if len(node.parts) == 1 and name.lower() in ("true", "false"):
            return self._literal(Literal(node.start, node.col, value=name.lower() == "true",
                                         literal_kind=ValueType.BOOL))
        value_type = self.vocabulary.get(name)
        if value_type is None:
            raise self.error(node.start, self._unknown(node))
        attr = Attr(node.start, node.col, name=name)
        attr.kind = kind_of(value_type)
        return attr

    def _unknown(self, node: Name) -> str:
        reason = f"unknown attribute '{node.dotted}'"
        for n in range(len(node.parts) - 1, 0, -1):
            prefix = ".".join(node.parts[:n])
            if prefix in self.vocabulary:
                rest = ".".join(node.parts[n:])
                if self.vocabulary[prefix] is ValueType.STRING_MAP:
                    return f'{reason}; {prefix} is a STRING_MAP: write {prefix}["{rest}"]'
                kind = self.vocabulary[prefix].name
                return f"{reason}; {prefix} is {kind} and has no field '{rest}'"
        return reason

    def _select(self, node: Select) -> Node:
        raise self.error(node.col, f"cannot select '.{node.field_name}' here: only attribute "
                                   "names contain dots")

    # --- operators ------------------------------------------------------------------------

    def _index(self, node: Index) -> Node:
        target = self.check(node.target)
        if target.kind is not Kind.STRING_MAP:
            raise self.error(node.col, f"cannot index {target.kind.name}: only STRING_MAP values "
                                       "can be indexed")
        key = self.check(node.key)
        if key.kind is not S:
            raise self.error(key.start, f"map key must be STRING, got {key.kind.name}")
        out = Index(node.start, node.col, target=target, key=key)
        out.kind = S
        return out

    def _unary(self, node: Unary) -> Node:
        operand = self.check(node.operand)
        if node.op == "!":
            if operand.kind is not B:
                raise self.error(operand.start, f"operator ! needs a BOOL operand, got "
                                                f"{operand.kind.name}")
        elif operand.kind not in (I, D, Kind.DURATION):
            raise self.error(node.col, f"operator - is not defined for {operand.kind.name}")
        node.operand = operand
        node.kind = operand.kind
        return node

    def _binary(self, node: Binary) -> Node:
        left, right = self.check(node.left), self.check(node.right)
        op = node.op
        if op in ("&&", "||"):
            for side in (left, right):
                if side.kind is not B:
                    raise self.error(side.start, f"operator {op} needs BOOL operands, got "
                                                 f"{side.kind.name}")
            node.left, node.right, node.kind = left, right, B
            return node
        left, right, kind = self.unify(left, right)
        if kind is None:
            raise self.error(node.col, self._mismatch(op, left, right))
        if op in ("==", "!=") and kind is Kind.STRING_MAP:
            raise self.error(node.col, "cannot compare STRING_MAP values")
        if op in ("<", "<=", ">", ">=") and kind not in ORDERED:
            raise self.error(node.col, f"operator {op} is not defined for {kind.name}")
        if op == "+" and kind not in ADDABLE:
            raise self.error(node.col, f"operator + is not defined for {kind.name}")
        node.left, node.right, node.operand_kind = left, right, kind
        node.kind = kind if op in ("|", "+") else B
        return node

    def _mismatch(self, op: str, left: Node, right: Node) -> str:
        a, b = left.kind.name, right.kind.name
        if op == "|":
            return f"both sides of | must have the same type, got {a} and {b}"
        if op == "+":
            return f"cannot add {a} and {b}"
        reason = f"cannot compare {a} with {b}"
        for typed, other in ((left, right), (right, left)):
            if typed.kind in _HINTS and isinstance(other, Literal) and other.kind is S:
                return f'{reason} (write {_HINTS[typed.kind]}("..."))'
        return reason

    def unify(self, left: Node, right: Node) -> tuple[Node, Node, Kind | None]:
        """One kind for two operands: equal kinds, a duration literal and a DURATION, or ANY."""
        if left.kind is right.kind:
            return left, right, left.kind
        if left.kind is Kind.DURATION and self.as_duration(right) is not None:
            return left, self.as_duration(right), left.kind
        if right.kind is Kind.DURATION and self.as_duration(left) is not None:
            return self.as_duration(left), right, right.kind
        if Kind.ANY in (left.kind, right.kind):
            return left, right, Kind.ANY
        return left, right, None

    @staticmethod
    def as_duration(node: Node) -> Literal | None:
        """``node`` as a DURATION if it is a string literal Mixer reads as one (``"10ms"``)."""
        if isinstance(node, Literal) and node.kind is S and node.duration is not None:
            out = Literal(node.start, node.col, value=node.duration,
                          literal_kind=ValueType.DURATION)
            out.kind = Kind.DURATION
            return out
        return None

    # --- calls ----------------------------------------------------------------------------

    def _call(self, node: Call) -> Node:
        args = [self.check(a) for a in ([node.receiver] if node.receiver else []) + node.args]
        if node.name == "conditional" and node.receiver is None:
            return self._conditional(node, args)
        spec = self.resolve(node, args)
        out = Call(node.start, node.col, name=node.name, args=args, spec=spec)
        out.kind = spec.result
        if spec.name == "matches":
            if not isinstance(args[0], Literal):
                # A pattern taken from the request would let a client choose the regex (and its
                # cost): only a constant pattern, compiled and checked here, is accepted.
                raise self.error(args[0].start, 'the pattern of matches must be a constant string: '
                                                'write "regex".matches(value)')
            try:  # a constant pattern is compiled (and rejected) now, not per request
                fn.compile_regex(args[0].value)
            except fn.FunctionError as e:
                raise self.error(args[0].start, str(e)) from None
        if all(isinstance(a, Literal) for a in args):
            return self.fold(out)
        return out

    def resolve(self, node: Call, args: list[Node]) -> Function:
        """Find the overload of ``node.name`` that fits the call form and argument kinds."""
        overloads = FUNCTIONS.get(node.name)
        if overloads is None:
            raise self.error(node.col, f"unknown function '{node.name}'")
        is_method = node.receiver is not None
        forms = [f for f in overloads if f.method == is_method]
        if not forms:
            if is_method:
                raise self.error(node.col, f"{node.name} is a function, not a method: write "
                                           f"{node.name}(...)")
            example = '"regex".matches(str)' if node.name == "matches" else f"str.{node.name}(...)"
            raise self.error(node.col, f"{node.name} is a method: write {example}")
        arity = len(forms[0].params) - is_method
        if len(args) - is_method != arity:
            plural = "argument" if arity == 1 else "arguments"
            raise self.error(node.col, f"{node.name} takes {arity} {plural}, got "
                                       f"{len(args) - is_method}")
        for spec in forms:
            if all(a.kind is p for a, p in zip(args, spec.params)):
                return spec
        spec = forms[0]
        for i, (arg, param) in enumerate(zip(args, spec.params)):
            if arg.kind is not param:
                if is_method and i == 0:
                    raise self.error(arg.start, f"{node.name} needs a {param.name} receiver, got "
                                                f"{arg.kind.name}")
                wanted = " or ".join(sorted({f.params[i].name for f in forms}))
                raise self.error(arg.start, f"argument {i + 1 - is_method} of {node.name} must be "
                                            f"{wanted}, got {arg.kind.name}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _conditional(self, node: Call, args: list[Node]) -> Node:
        if len(args) != 3:
            raise self.error(node.col, f"conditional takes 3 arguments, got {len(args)}")
        if args[0].kind is not B:
            raise self.error(args[0].start, f"argument 1 of conditional must be BOOL, got "
                                            f"{args[0].kind.name}")
        a, b, kind = self.unify(args[1], args[2])
        if kind is None:
            raise self.error(node.col, f"both branches of conditional must have the same type, "
                                       f"got {a.kind.name} and {b.kind.name}")
        if isinstance(args[0], Literal):  # a constant condition picks its branch now
            return a if args[0].value else b
        out = Call(node.start, node.col, name="conditional", args=[args[0], a, b], spec=CONDITIONAL)
        out.kind = kind
        return out

    def fold(self, node: Call) -> Node:
        """Evaluate a call whose arguments are all constant; bad input is a compile error."""
        try:
            value = node.spec.impl(*(a.value for a in node.args))
        except fn.FunctionError as e:
            raise self.error(node.col, str(e)) from None
        out = Literal(node.start, node.col, value=value)
        out.kind = node.kind
        return out
