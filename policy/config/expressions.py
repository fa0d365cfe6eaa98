"""Compiling the expressions of a config: rule matches, header values and instance fields.

An instance's params mirror its template's fields: a scalar field takes one
expression (compiled with the field's type expected, unless the field accepts
any type), a value map (``dimensions``) takes a mapping of key → expression, and a
nested group (``subject`` of ``authorization``) takes a mapping of its own fields.
Field names are the template's (``monitored_resource_type``) or their camelCase.
An empty expression (``groups: ""``) leaves a scalar field unset, as in Mixer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.attributes import VOLATILE_ATTRIBUTES, ValueType, Vocabulary
from policy.config.shape import Reporter, Where, describe, expression_text, key_part
from policy.expr import CompiledExpression, ExpressionError, compile_expression
from policy.sdk import ValueMap
from policy.sdk.params import camel


def compile_text(
    text: str,
    at: Where,
    vocabulary: Vocabulary,
    reporter: Reporter,
    expected: ValueType | None = None,
) -> CompiledExpression | None:
    """Compile one expression; a failure is reported at ``at`` (with its column) and gives None."""
    if expected is ValueType.ANY:
        expected = None
    try:
        return compile_expression(text, vocabulary, expected=expected)
    except ExpressionError as exc:
        reporter.error(at, str(exc))
        return None


def volatile_reads(expression: CompiledExpression) -> list[str]:
    """The volatile attributes (``request.id`` ...) an expression reads, sorted."""
    return sorted({name for name, _ in expression.referenced if name in VOLATILE_ATTRIBUTES})


def compile_fields(
    fields: Mapping[str, Any],
    raw: Any,
    at: Where,
    template: str,
    vocabulary: Vocabulary,
    reporter: Reporter,
    reads: list[tuple[Where, str]],
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compile instance params against a template's ``fields``.

    Returns what :class:`~policy.config.snapshot.InstanceBuilder` takes as ``fields``:
    the fields given, plus the template's ``defaults`` (expression texts of the same
    shape) for fields left out; other fields take the instance type's defaults.
    Every attribute read is appended to ``reads`` with the place it is read at.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        reporter.error(at, f"expected a mapping of template {template!r} fields, got {describe(raw)}")
        raw = {}
    defaults = defaults or {}
    by_key = {camel(name): name for name in fields} | {name: name for name in fields}
    out: dict[str, Any] = {}
    unset: set[str] = set()
    for key, value in raw.items():
        field_at = at.at(key_part(key))
        name = by_key.get(str(key))
        if name is None:
            known = ", ".join(sorted(fields)) or "none"
            reporter.error(field_at, f"not a field of template {template!r} (fields: {known})")
            continue
        if value is None:
            continue
        kind = fields[name]
        if isinstance(value, str) and not value.strip() and not isinstance(kind, (ValueMap, Mapping)):
            # Mixer: an empty expression leaves a scalar field unset (Istio 1.0's RBAC task wrote
            # ``groups: ""``); the template's default does not fill it in either.
            unset.add(name)
            continue
        if isinstance(kind, ValueMap):
            out[name] = _compile_map(kind, value, field_at, vocabulary, reporter, reads)
        elif isinstance(kind, Mapping):
            nested_defaults = defaults.get(name)
            out[name] = compile_fields(kind, value, field_at, template, vocabulary, reporter, reads,
                                       nested_defaults if isinstance(nested_defaults, Mapping) else None)
        else:
            expression = _compile_scalar(value, field_at, kind, vocabulary, reporter, reads)
            if expression is not None:
                out[name] = expression
    _apply_defaults(fields, {k: v for k, v in defaults.items() if k not in unset}, out, at, template,
                    vocabulary, reporter, reads)
    return out


def _apply_defaults(
    fields: Mapping[str, Any],
    defaults: Mapping[str, Any],
    out: dict[str, Any],
    at: Where,
    template: str,
    vocabulary: Vocabulary,
    reporter: Reporter,
    reads: list[tuple[Where, str]],
) -> None:
    """Compile the template's default expressions of the fields ``out`` lacks."""
    # A broken default is the template's bug: say so rather than point at the user's params.
    local = Reporter()
    for name, default in defaults.items():
        kind = fields.get(name)
        if name in out or kind is None:
            continue
        field_at = at.at(name)
        if isinstance(kind, ValueMap):
            out[name] = _compile_map(kind, default, field_at, vocabulary, local, reads)
        elif isinstance(kind, Mapping):
            out[name] = compile_fields(kind, {}, field_at, template, vocabulary, local, reads,
                                       default if isinstance(default, Mapping) else None)
        else:
            expression = _compile_scalar(default, field_at, kind, vocabulary, local, reads)
            if expression is not None:
                out[name] = expression
    for issue in local.errors:
        reporter.error(Where(issue.file, issue.document, issue.field),
                       f"template {template!r} default for this field: {issue.message}")


def _compile_map(
    kind: ValueMap,
    value: Any,
    at: Where,
    vocabulary: Vocabulary,
    reporter: Reporter,
    reads: list[tuple[Where, str]],
) -> dict[str, CompiledExpression]:
    if not isinstance(value, Mapping):
        reporter.error(at, f"expected a mapping of name to expression, got {describe(value)}")
        return {}
    out = {}
    for key, item in value.items():
        expression = _compile_scalar(item, at.at(key_part(key)), kind.value_type, vocabulary, reporter, reads)
        if expression is not None:
            out[str(key)] = expression
    return out


def _compile_scalar(
    value: Any,
    at: Where,
    value_type: ValueType,
    vocabulary: Vocabulary,
    reporter: Reporter,
    reads: list[tuple[Where, str]],
) -> CompiledExpression | None:
    text = expression_text(value, at, reporter)
    if text is None:
        return None
    expression = compile_text(text, at, vocabulary, reporter, value_type)
    if expression is not None:
        reads.extend((at, name) for name, _ in sorted(expression.referenced, key=lambda r: (r[0], r[1] or "")))
    return expression


__all__ = ["compile_fields", "compile_text", "volatile_reads"]
