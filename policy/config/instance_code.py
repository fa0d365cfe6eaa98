"""An instance builder's fields compiled into one Python function.

:class:`~policy.config.snapshot.InstanceBuilder` evaluates each field's expression
against a bag and calls the template's factory. Walking the field tree for every
instance (checking each field's kind, building the keyword dict, unpacking it)
cost about as much as evaluating the expressions; reports build an instance per
report rule action for every check, so the walk is done once here instead, when
the snapshot is built, and ``build`` runs straight-line code:

.. code-block:: python

    def build(bag):
        try:
            f0 = e0(bag)
        except _NotFound:
            f0 = None
        f1 = {}
        try:
            f1['code'] = e1(bag)
        except _NotFound:
            pass
        return _factory(name=_name, value=f0, dimensions=f1)

Same rules as the walk: a scalar reading an absent attribute is None, a map entry
reading one is left out, a nested group is a dict, other errors propagate; keys keep
their order. Expression functions, map keys and the instance name are passed in the
function's namespace, never as text; a field name appears as a keyword only when it
is a plain identifier.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from typing import Any

from policy.expr import AttributeNotFound
from policy.sdk import ValueMap


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {"_NotFound": AttributeNotFound}
        self.count = 0

    def const(self, value: Any) -> str:
        name = f"k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def local(self) -> str:
        self.count += 1
        return f"f{self.count}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def group(self, spec: Mapping[str, Any], compiled: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Emit the fields of one group; returns (key constant, local) pairs in the fields' order."""
        out: list[tuple[str, str]] = []
        for key, expr in compiled.items():
            kind = spec[key]
            target = self.local()
            if isinstance(kind, ValueMap):
                self.emit(1, f"{target} = {{}}")
                for map_key, value_expr in expr.items():
                    self.emit(1, "try:")
                    self.emit(2, f"{target}[{self.const(map_key)}] = {self.const(value_expr.evaluate)}(bag)")
                    self.emit(1, "except _NotFound:")
                    self.emit(2, "pass")
            elif isinstance(kind, Mapping):
                members = self.group(kind, expr)
                self.emit(1, f"{target} = {{{', '.join(f'{k}: {v}' for k, v in members)}}}")
            else:
                self.emit(1, "try:")
                self.emit(2, f"{target} = {self.const(expr.evaluate)}(bag)")
                self.emit(1, "except _NotFound:")
                self.emit(2, f"{target} = None")
            out.append((self.const(key), target))
        return out


def _argument(field: str, key: str, local: str) -> str:
    """A keyword argument: ``field=local`` when the field's name is a plain identifier, else ``**{key: local}``."""
    if field.isidentifier() and not keyword.iskeyword(field) and field != "name":
        return f", {field}={local}"
    return f", **{{{key}: {local}}}"  # as the walk passed it (a field called "name" fails as it did)


def compile_builder(name: str, spec: Mapping[str, Any], compiled: Mapping[str, Any],
                    factory: Callable[..., Any]) -> Callable[[Any], Any]:
    """``build(bag)`` making ``factory(name=name, **fields evaluated against bag)``.

    :param spec: the template's fields (field name → kind: value type, ValueMap, nested mapping).
    :param compiled: the instance's compiled fields, of the same shape (see InstanceBuilder).
    """
    writer = _Writer()
    fields = writer.group(spec, compiled)
    arguments = "".join(_argument(writer.namespace[key], key, local) for key, local in fields)
    writer.emit(1, f"return {writer.const(factory)}(name={writer.const(name)}{arguments})")
    source = "def build(bag):\n" + "\n".join(writer.lines) + "\n"
    namespace = writer.namespace
    exec(compile(source, f"<instance {name}>", "exec"), namespace)  # noqa: S102 - our own generated source
    build: Callable[[Any], Any] = namespace["build"]
    return build


__all__ = ["compile_builder"]
