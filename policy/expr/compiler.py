"""Compilation: a checked tree → one small generated Python function per expression.

The function reads the bag through ``bag.get(name)``, ``bag.lookup(name, key)`` and
``bag.get_key(name, key)`` only, so a :class:`~policy.attributes.RecordingBag` sees
every read. The semantics are those of Mixer's IL compiler and interpreter
(``mixer/pkg/lang/compiler``, ``mixer/pkg/il/interpreter``): reading an absent
attribute raises :class:`AttributeNotFound`; indexing a present map with an absent
key gives "" (only an absent map fails); on the left of ``|`` an attribute, a map
lookup (absent map or absent key) or a nested ``|`` falls through to the right
side, while any other left side (a call, an operator, ``conditional``) is evaluated
as usual: it always has a value, or fails. Absence is a None check, not an
exception. Constant arguments were folded by the checker; constant glob and regex
patterns are specialised here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from policy.attributes import ValueType
from policy.expr import functions as fn
from policy.expr.checker import CONDITIONAL, Checker, Kind, kind_of, value_type_of
from policy.expr.errors import AttributeNotFound, EvaluationError
from policy.expr.grammar import parse
from policy.expr.nodes import Attr, Binary, Call, Index, Literal, Node, Unary, walk

_TEMP = re.compile(r"v\d+\Z")
_STRINGY = (Kind.STRING, Kind.DNS_NAME, Kind.EMAIL_ADDRESS, Kind.URI)
_EQUALITY = {Kind.IP_ADDRESS: fn.ip_equal, Kind.DNS_NAME: fn.dns_name_equal,
             Kind.EMAIL_ADDRESS: fn.email_equal, Kind.URI: fn.uri_equal}


class Bag(Protocol):
    """What an expression reads from: ``AttributeBag`` or ``RecordingBag``."""

    def get(self, name: str) -> Any:
        """The attribute's value, or None when absent."""
        ...

    def lookup(self, name: str, key: str) -> str | None:
        """``name[key]`` of a map attribute (Mixer's lookup), recording the read."""
        ...

    def get_key(self, name: str, key: str) -> str | None:
        """``name[key]`` of a map attribute, or None when the map or the key is absent."""
        ...


class CompiledExpression:
    """A checked, compiled expression.

    ``evaluate(bag)`` returns the value (of ``result_type``) or raises
    :class:`EvaluationError` / :class:`AttributeNotFound`. It is a plain
    function stored on the instance, so calling it costs one call.
    ``referenced`` is known statically: ``(attr, None)`` for a whole attribute
    (or a map indexed by a computed key), ``(attr, key)`` for a constant key.
    """

    __slots__ = ("text", "result_type", "referenced", "is_constant", "evaluate", "_source")

    text: str
    result_type: ValueType
    referenced: frozenset[tuple[str, str | None]]
    is_constant: bool
    evaluate: Callable[[Bag], Any]

    def __init__(self, text: str, result_type: ValueType,
                 referenced: frozenset[tuple[str, str | None]],
                 evaluate: Callable[[Bag], Any], source: str) -> None:
        self.text = text
        self.result_type = result_type
        self.referenced = referenced
        self.is_constant = not referenced
        self.evaluate = evaluate
        self._source = source

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r}, {self.result_type.name})"


def compile_expression(text: str, vocabulary: Mapping[str, ValueType], *,
                       expected: ValueType | None = None) -> CompiledExpression:
    """Parse, type-check against ``vocabulary`` and compile ``text``.

    :param expected: the type the result must have; an INT64 result satisfies
        DOUBLE (and is returned as float), a string-valued kind (``dnsName(..)``)
        satisfies STRING, a duration literal (``"10ms"``) satisfies DURATION,
        and ANY accepts everything.
    :raises ExpressionError: syntax errors, unknown attributes or functions,
        wrong arity, type errors, and a result that does not fit ``expected``.
    """
    checker = Checker(text, vocabulary)
    node = checker.check(parse(text))
    result_type, node, to_float = _fit(checker, node, expected)
    gen = _Generator(text)
    code, _ = gen.expr(node)
    if to_float:
        code = f"float({code})"
    source = gen.source(code)
    namespace = dict(gen.namespace)
    exec(compile(source, f"<expression {text!r}>", "exec"), namespace)  # noqa: S102
    return CompiledExpression(text, result_type, _references(node), namespace["_evaluate"],
                              source)


def _fit(checker: Checker, node: Node, expected: ValueType | None) -> tuple[ValueType, Node, bool]:
    """Check the result against ``expected``; return (result type, node, convert to float)."""
    kind = node.kind
    natural = value_type_of(kind)
    if expected is None or expected is ValueType.ANY:
        return natural, node, False
    want = kind_of(expected)
    if kind is want or kind is Kind.ANY or (want is Kind.STRING and kind in _STRINGY):
        return expected, node, False
    if want is Kind.DOUBLE and kind is Kind.INT64:
        return expected, node, True
    if want is Kind.DURATION and checker.as_duration(node) is not None:
        return expected, checker.as_duration(node), False
    raise checker.error(1, f"expression has type {kind.name}, expected {expected.name}")


def _references(node: Node) -> frozenset[tuple[str, str | None]]:
    out: set[tuple[str, str | None]] = set()
    skip: set[int] = set()
    for n in walk(node):
        if id(n) in skip:
            continue
        if isinstance(n, Attr):
            out.add((n.name, None))
        elif isinstance(n, Index) and isinstance(n.target, Attr) and isinstance(n.key, Literal):
            out.add((n.target.name, n.key.value))
            skip.add(id(n.target))
    return frozenset(out)


class _Generator:
    """Emits the body of ``_evaluate(bag)`` as (depth, line) pairs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: list[tuple[int, str]] = []
        self.depth = 1
        self.temps = 0
        self.fallible = False
        # Reads already made (and found present) on every path to the current line:
        # a second reference reuses the value instead of reading the bag again.
        self.known: dict[tuple[str, str | None], str] = {}
        self.namespace: dict[str, Any] = {
            "_absent": lambda name, key=None: AttributeNotFound(text, name, key),
            "_EvaluationError": EvaluationError,
            "_FunctionError": fn.FunctionError,
            "_text": text,
        }

    # --- plumbing -------------------------------------------------------------------------

    def source(self, result: str) -> str:
        """The whole function's source, returning ``result``."""
        body = self.lines + [(1, f"return {result}")]
        if self.fallible:  # one handler for every function that can reject its input
            body = [(1, "try:")] + [(d + 1, line) for d, line in body] + [
                (1, "except _FunctionError as e:"),
                (2, "raise _EvaluationError(_text, str(e)) from None"),
            ]
        return "def _evaluate(bag):\n" + "".join(f"{'    ' * d}{line}\n" for d, line in body)

    def emit(self, line: str, extra: int = 0) -> None:
        self.lines.append((self.depth + extra, line))

    def temp(self) -> str:
        self.temps += 1
        return f"v{self.temps}"

    def const(self, value: Any) -> str:
        if type(value) in (str, int, bool) or (type(value) is float and math.isfinite(value)):
            return repr(value)
        name = f"c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def helper(self, func: Callable, name: str) -> str:
        key = f"_f_{name}"
        self.namespace.setdefault(key, func)
        return key

    def nested(self, node: Node, nullable: bool = False) -> tuple[list, str, bool]:
        """Generate ``node`` one level deeper; return (lines, code, may be None)."""
        saved, self.lines = self.lines, []
        known = self.known
        self.known = dict(known)  # what the nested block reads is not known after it
        self.depth += 1
        try:
            code, maybe_none = self.expr(node, nullable)
            return self.lines, code, maybe_none
        finally:
            self.lines = saved
            self.known = known
            self.depth -= 1

    def absent_check(self, value: str, *args: str) -> None:
        self.emit(f"if {value} is None:")
        self.emit(f"raise _absent({', '.join(args)})", 1)

    # --- nodes ----------------------------------------------------------------------------

    def expr(self, node: Node, nullable: bool = False) -> tuple[str, bool]:
        """Python code for ``node``'s value; with ``nullable``, an absence yields None."""
        if isinstance(node, Literal):
            return self.const(node.value), False
        if isinstance(node, Attr):
            return self.attr(node, nullable)
        if isinstance(node, Index):
            return self.index(node, nullable)
        if isinstance(node, Binary) and node.op == "|":
            return self.default(node, nullable)
        if isinstance(node, Binary):
            return self.binary(node), False
        if isinstance(node, Unary):
            code, _ = self.expr(node.operand)
            return (f"(not {code})" if node.op == "!" else f"(-{code})"), False
        return self.call(node), False

    def attr(self, node: Attr, nullable: bool) -> tuple[str, bool]:
        if (node.name, None) in self.known:
            return self.known[node.name, None], False
        value = self.temp()
        self.emit(f"{value} = bag.get({node.name!r})")
        if not nullable:
            self.absent_check(value, repr(node.name))
            self.known[node.name, None] = value
        return value, nullable

    def index(self, node: Index, nullable: bool) -> tuple[str, bool]:
        """``map[key]``: strict, an absent map fails and an absent key is ""; nullable
        (left of ``|``), either absence yields None."""
        const_key = (node.target.name, node.key.value) if isinstance(node.target, Attr) and \
            isinstance(node.key, Literal) else None
        if not nullable and const_key in self.known:  # a strict "" is no value for ``|``
            return self.known[const_key], False
        value = self.temp()
        if isinstance(node.target, Attr) and isinstance(node.key, Literal):
            name = repr(node.target.name)
            key = self.const(node.key.value)
            self.emit(f"{value} = bag.get_key({name}, {key})" if nullable else
                      f"{value} = bag.lookup({name}, {key})")
            if not nullable:
                self.absent_check(value, name)
        elif isinstance(node.target, Attr):  # the map first, then the key, as Mixer's IL
            target, _ = self.attr(node.target, nullable)
            if nullable:
                lines, key, key_none = self.nested(node.key, nullable)
                self.emit(f"if {target} is None:")
                self.emit(f"{value} = None", 1)
                self.emit("else:")
                self.lines += lines
                self.emit(f"{value} = None if {key} is None else {target}.get({key})" if key_none
                          else f"{value} = {target}.get({key})", 1)
            else:
                key, _ = self.expr(node.key)
                self.emit(f"{value} = {target}.get({key}, '')")
        else:  # a computed map: (a | b)["k"], emptyStringMap()["k"]; it has a value or failed
            target, target_none = self.expr(node.target, nullable)
            key, key_none = self.expr(node.key, nullable)
            maybe = [f"{c} is None" for c, flag in ((target, target_none), (key, key_none)) if flag]
            read = f"{target}.get({key})" if nullable else f"{target}.get({key}, '')"
            self.emit(f"{value} = None if {' or '.join(maybe)} else {read}" if maybe else
                      f"{value} = {read}")
        if not nullable and const_key is not None:
            self.known[const_key] = value
        return value, nullable

    def default(self, node: Binary, nullable: bool) -> tuple[str, bool]:
        if isinstance(node.left, Literal):
            return self.const(node.left.value), False
        left, left_none = self.expr(node.left, True)
        if not left_none:
            return left, False
        if not _TEMP.match(left):
            value = self.temp()
            self.emit(f"{value} = {left}")
            left = value
        lines, right, right_none = self.nested(node.right, nullable)
        self.emit(f"if {left} is None:")
        self.lines += lines
        self.emit(f"{left} = {right}", 1)
        return left, right_none

    def branch(self, test: str, then: tuple[list, str], otherwise: tuple[list, str]) -> str:
        """``then if test else otherwise``, as an expression when neither side has statements."""
        if not then[0] and not otherwise[0]:
            return f"({then[1]} if {test} else {otherwise[1]})"
        value = self.temp()
        self.emit(f"if {test}:")
        self.lines += then[0]
        self.emit(f"{value} = {then[1]}", 1)
        self.emit("else:")
        self.lines += otherwise[0]
        self.emit(f"{value} = {otherwise[1]}", 1)
        return value

    def binary(self, node: Binary) -> str:
        left, _ = self.expr(node.left)
        if node.op in ("&&", "||"):
            lines, right, _ = self.nested(node.right)
            if not lines:
                return f"({left} {'and' if node.op == '&&' else 'or'} {right})"
            if node.op == "&&":
                return self.branch(left, (lines, right), ([], "False"))
            return self.branch(left, ([], "True"), (lines, right))
        right, _ = self.expr(node.right)
        kind = node.operand_kind
        if node.op in ("==", "!=") and kind in _EQUALITY:
            code = f"{self.helper(_EQUALITY[kind], kind.name.lower() + '_equal')}({left}, {right})"
            if kind is not Kind.IP_ADDRESS:  # the others can reject their input
                self.fallible = True
                value = self.temp()
                self.emit(f"{value} = {code}")
                code = value
            return f"(not {code})" if node.op == "!=" else code
        return f"({left} {node.op} {right})"

    def call(self, node: Call) -> str:
        spec = node.spec
        if spec is CONDITIONAL or spec.name == "conditionalString":
            test, _ = self.expr(node.args[0])
            a = self.nested(node.args[1])
            b = self.nested(node.args[2])
            return self.branch(test, a[:2], b[:2])
        args = [self.expr(a)[0] for a in node.args]
        if spec.name == "match" and isinstance(node.args[1], Literal):
            pattern = node.args[1].value
            if pattern.endswith("*"):
                return f"{args[0]}.startswith({self.const(pattern[:-1])})"
            if pattern.startswith("*"):
                return f"{args[0]}.endswith({self.const(pattern[1:])})"
            return f"({args[0]} == {args[1]})"
        if spec.name == "matches" and isinstance(node.args[0], Literal):
            regex = self.const(fn.compile_regex(node.args[0].value))
            return f"({regex}.search({args[1]}) is not None)"
        if spec.inline is not None:
            return spec.inline.format(*args)
        code = f"{self.helper(spec.impl, spec.name)}({', '.join(args)})"
        if spec.fallible:
            self.fallible = True
            value = self.temp()
            self.emit(f"{value} = {code}")
            return value
        return code
