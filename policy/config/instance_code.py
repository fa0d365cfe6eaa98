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

The SDK's own instance classes (:mod:`policy.sdk.templates`: frozen, slotted
dataclasses) are made by setting their slots directly, defaults included, rather
than through their ``__init__``: the object is equal and costs half as much. Any
other factory, and any field the class does not have, goes through the call above.
"""

from __future__ import annotations

import dataclasses
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


def _emit_direct(writer: _Writer, factory: Any, values: dict[str, str]) -> bool:
    """Emit the making of one of the SDK's own instance classes without its ``__init__``; False when unsure.

    The SDK's instance classes are frozen, slotted dataclasses with no ``__post_init__``,
    whose ``__init__`` sets each field through ``object.__setattr__`` (0.6 µs for a
    metric). Setting the slots directly gives an equal object in less than half the
    time. Only for the classes of :mod:`policy.sdk.templates`, and only when every
    evaluated field is one of the class's fields and every other field has a default:
    anything else is left to the class itself (and its errors).
    """
    if not (isinstance(factory, type) and factory.__module__ == "policy.sdk.templates"
            and dataclasses.is_dataclass(factory) and "__slots__" in factory.__dict__
            and not hasattr(factory, "__post_init__")):
        return False
    fields = {f.name: f for f in dataclasses.fields(factory)}
    if not set(values) <= set(fields) or any(not f.init for f in fields.values()):
        return False
    statements = []
    for field_name, field in fields.items():
        if field_name in values:
            value = values[field_name]
        elif field.default is not dataclasses.MISSING:
            value = writer.const(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            value = f"{writer.const(field.default_factory)}()"
        else:
            return False
        statements.append(f"{writer.const(factory.__dict__[field_name].__set__)}(instance, {value})")
    writer.emit(1, f"instance = {writer.const(object.__new__)}({writer.const(factory)})")
    for statement in statements:
        writer.emit(1, statement)
    writer.emit(1, "return instance")
    return True


def compile_builder(name: str, spec: Mapping[str, Any], compiled: Mapping[str, Any],
                    factory: Callable[..., Any]) -> Callable[[Any], Any]:
    """``build(bag)`` making ``factory(name=name, **fields evaluated against bag)``.

    :param spec: the template's fields (field name → kind: value type, ValueMap, nested mapping).
    :param compiled: the instance's compiled fields, of the same shape (see InstanceBuilder).
    """
    writer = _Writer()
    fields = writer.group(spec, compiled)
    direct = {writer.namespace[key]: local for key, local in fields}
    if "name" in direct or not _emit_direct(writer, factory, {"name": writer.const(name), **direct}):
        arguments = "".join(_argument(writer.namespace[key], key, local) for key, local in fields)
        writer.emit(1, f"return {writer.const(factory)}(name={writer.const(name)}{arguments})")
    source = "def build(bag):\n" + "\n".join(writer.lines) + "\n"
    namespace = writer.namespace
    exec(compile(source, f"<instance {name}>", "exec"), namespace)  # noqa: S102 - our own generated source
    build: Callable[[Any], Any] = namespace["build"]
    return build


__all__ = ["compile_builder"]
