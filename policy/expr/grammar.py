"""Parsing: expression text → :mod:`policy.expr.nodes` tree.

The syntax is Mixer's: a subset of Go expressions (so Go's precedence, where
``|`` binds like ``+``, tighter than ``==``), plus CEL's single-quoted strings
and ``!``. Unknown operators (``-`` between operands, ``*``, ``/``) are syntax
errors rather than Mixer's "unknown function: SUB". The LALR parser is built
once per process, on first use.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re

import lark
from lark import Lark, Token, Transformer, v_args

from policy.attributes import ValueType
from policy.expr.errors import ExpressionError
from policy.expr.nodes import Binary, Call, Index, Literal, Name, Node, Select, Unary

_GRAMMAR = r"""
?start: expr
?expr: lor
?lor: land | lor OROR land -> binary
?land: cmp | land ANDAND cmp -> binary
?cmp: add | cmp CMPOP add -> binary
?add: unary | add ADDOP unary -> binary
?unary: postfix | BANG unary -> unary | MINUS unary -> unary
?postfix: primary
    | postfix DOT NAME -> select
    | postfix DOT NAME LPAR args RPAR -> method
    | postfix LBRACK expr RBRACK -> index
?primary: NAME -> name
    | NAME LPAR args RPAR -> call
    | STRING -> string
    | INT -> int
    | FLOAT -> float
    | LPAR expr RPAR -> paren
args: (expr (COMMA expr)*)?

OROR: "||"
ANDAND: "&&"
CMPOP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADDOP: "+" | "|"
BANG: "!"
MINUS: "-"
DOT: "."
COMMA: ","
LPAR: "("
RPAR: ")"
LBRACK: "["
RBRACK: "]"
NAME: /[^\W\d]\w*/
STRING: /"(?:[^"\\\n]|\\.)*"/ | /'(?:[^'\\\n]|\\.)*'/ | /`[^`]*`/
FLOAT.2: /(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+/
INT: /\d+/
%ignore /[ \t\r\n]+/
"""

_INT64_MAX = 2**63 - 1
_EOF = "syntax error: unexpected end of expression"

# How an unexpected terminal is shown in a syntax error.
_SHOWN = {
    "OROR": "'||'", "ANDAND": "'&&'", "CMPOP": "a comparison", "ADDOP": "'+' or '|'",
    "BANG": "'!'", "MINUS": "'-'", "DOT": "'.'", "COMMA": "','", "LPAR": "'('",
    "RPAR": "')'", "LBRACK": "'['", "RBRACK": "']'", "NAME": "a name",
    "STRING": "a string", "INT": "a number", "FLOAT": "a number", "$END": "end of expression",
}


def parse(text: str) -> Node:
    """Parse ``text`` into an unchecked tree; raise :class:`ExpressionError` on a syntax error."""
    if not text.strip():
        raise ExpressionError(text, 1, "empty expression")
    try:
        return _parser().parse(text)
    except _LiteralError as e:  # a literal the transformer rejected
        raise ExpressionError(text, e.column, e.reason) from None
    except lark.exceptions.UnexpectedCharacters as e:
        raise ExpressionError(
            text, e.pos_in_stream + 1, f"syntax error: unexpected character {text[e.pos_in_stream]!r}"
        ) from None
    except lark.exceptions.UnexpectedEOF:
        raise ExpressionError(text, len(text) + 1, _EOF) from None
    except lark.exceptions.UnexpectedToken as e:
        token = e.token
        if token.type == "$END":
            raise ExpressionError(text, len(text.rstrip()) + 1, _EOF) from None
        raise ExpressionError(
            text, _col(token), f"syntax error: unexpected {str(token)!r}{_expected(e.expected)}"
        ) from None


def _expected(expected: set[str]) -> str:
    shown = sorted({_SHOWN.get(name, name) for name in expected})
    if not shown or len(shown) > 4:
        return ""
    return " (expected " + " or ".join(shown) + ")"


@functools.cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", transformer=_ToNodes())


def _col(token: Token) -> int:
    """The 1-based position of ``token`` in the whole text (a new line does not restart it)."""
    return token.start_pos + 1


class _LiteralError(Exception):
    def __init__(self, column: int, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


@v_args(inline=True)
class _ToNodes(Transformer):
    """Builds nodes while the LALR parser reduces (no intermediate parse tree)."""

    def binary(self, left: Node, op: Token, right: Node) -> Node:
        return Binary(start=left.start, col=_col(op), op=str(op), left=left, right=right)

    def unary(self, op: Token, operand: Node) -> Node:
        if str(op) == "-" and isinstance(operand, Literal) and operand.literal_kind in (
            ValueType.INT64, ValueType.DOUBLE
        ):
            if operand.literal_kind is ValueType.INT64 and operand.value > _INT64_MAX + 1:
                raise _LiteralError(operand.start, "integer literal out of range")
            return Literal(start=_col(op), col=_col(op), value=-operand.value,
                           literal_kind=operand.literal_kind)
        return Unary(start=_col(op), col=_col(op), op=str(op), operand=operand)

    def select(self, target: Node, _dot: Token, name: Token) -> Node:
        if isinstance(target, Name) and not target.grouped:
            return Name(start=target.start, col=target.col, parts=(*target.parts, str(name)))
        return Select(start=target.start, col=_col(_dot), target=target, field_name=str(name))

    def method(self, receiver: Node, _dot: Token, name: Token, _l: Token, args: list, _r: Token):
        return Call(start=receiver.start, col=_col(name), name=str(name), receiver=receiver,
                    args=args)

    def index(self, target: Node, bracket: Token, key: Node, _r: Token) -> Node:
        return Index(start=target.start, col=_col(bracket), target=target, key=key)

    def name(self, token: Token) -> Node:
        return Name(start=_col(token), col=_col(token), parts=(str(token),))

    def call(self, name: Token, _l: Token, args: list, _r: Token) -> Node:
        return Call(start=_col(name), col=_col(name), name=str(name), args=args)

    def paren(self, lpar: Token, inner: Node, _r: Token) -> Node:
        if isinstance(inner, Name):
            inner = Name(start=inner.start, col=inner.col, parts=inner.parts, grouped=True)
        inner.start = _col(lpar)  # so the operand's text, as quoted in errors, has its parens
        return inner

    def args(self, *items) -> list:
        return [item for item in items if not isinstance(item, Token)]

    def string(self, token: Token) -> Node:
        value = _unquote(str(token), _col(token))
        return Literal(start=_col(token), col=_col(token), value=value,
                       literal_kind=ValueType.STRING, duration=parse_duration(value))

    def int(self, token: Token) -> Node:
        value = int(str(token))
        if value > _INT64_MAX + 1:  # + 1: the magnitude of the most negative int64
            raise _LiteralError(_col(token), "integer literal out of range")
        return Literal(start=_col(token), col=_col(token), value=value,
                       literal_kind=ValueType.INT64)

    def float(self, token: Token) -> Node:
        return Literal(start=_col(token), col=_col(token), value=float(str(token)),
                       literal_kind=ValueType.DOUBLE)


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "`": "`", "?": "?",
}
_ESCAPE = re.compile(
    r"\\(?:([0-7]{3})|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S
)


def _unquote(raw: str, column: int) -> str:
    """Decode a string literal: Go's escapes in '...' and "...", none in `raw` strings."""
    body = raw[1:-1]
    if raw[0] == "`" or "\\" not in body:
        return body

    def replace(m: re.Match) -> str:
        octal, hex2, hex4, hex8, other = m.groups()
        if other is not None:
            if other in _SIMPLE_ESCAPES:
                return _SIMPLE_ESCAPES[other]
            raise _LiteralError(column + 1 + m.start(), f"invalid escape sequence '\\{other}'")
        code = int(octal, 8) if octal else int(hex2 or hex4 or hex8, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _LiteralError(column + 1 + m.start(), f"invalid code point in '{m.group(0)}'")
        return chr(code)

    return _ESCAPE.sub(replace, body)


_DURATION_UNITS = {
    "ns": 1e-3, "us": 1.0, "µs": 1.0, "μs": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6,
}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> _dt.timedelta | None:
    """Read ``text`` as a Go duration (``"1h30m"``, ``"-1.5s"``, ``"0"``), or return None.

    Mixer types a string literal that parses this way as a DURATION constant.
    """
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return _dt.timedelta(0)
    if not s:
        return None
    micros = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            return None
        micros += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    try:
        return _dt.timedelta(microseconds=sign * micros)
    except OverflowError:
        return None
