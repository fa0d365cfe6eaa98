"""Parsing what both forms' rules share: match, actions and header operations.

A compact rule and a Mixer ``kind: rule`` spec have the same body; only where it
sits differs (``rules[2]`` vs ``spec``), which the :class:`Where` carries.
"""

from __future__ import annotations

from typing import Any

from policy.config.model import ActionSpec, HeaderOpSpec, ParseState, RuleSpec
from policy.config.shape import Where, expression_text, mapping, name_text, sequence
from policy.sdk import HeaderOperationKind

#: Keys of a rule body (besides the compact form's name and namespace).
BODY_KEYS = ("match", "actions", "requestHeaderOperations", "responseHeaderOperations")
ACTION_KEYS = ("handler", "instances", "name")
HEADER_OP_KEYS = ("name", "values", "operation")


def parse_rule_body(
    body: dict[str, Any],
    at: Where,
    state: ParseState,
    *,
    name: str,
    namespace: str,
    form: str,
    where: Where,
    default_name: bool = False,
) -> RuleSpec:
    """Build a :class:`RuleSpec` from a rule body whose keys were already checked.

    :param at: where the body sits (its fields are reported below it).
    :param where: the rule document itself.
    """
    reporter = state.reporter
    match_at = at.at("match")
    match = body.get("match")
    match_text: str | None = None
    if match is not None and not (isinstance(match, str) and not match.strip()):
        match_text = expression_text(match, match_at, reporter)
    actions = []
    raw_actions = sequence(body.get("actions"), at.at("actions"), reporter)
    has_ops = body.get("requestHeaderOperations") or body.get("responseHeaderOperations")
    if raw_actions == [] and not has_ops:
        # Mixer elides such a rule; it does nothing here either, but say so.
        reporter.warn(at.at("actions"), "the rule has no actions and no header operations: it does nothing")
    for i, raw in enumerate(raw_actions or []):
        action = _parse_action(raw, at.at("actions", i), state)
        if action is not None:
            actions.append(action)
    return RuleSpec(
        name=name,
        namespace=namespace,
        form=form,
        match=match_text,
        match_at=match_at,
        actions=actions,
        request_ops=_parse_header_ops(body.get("requestHeaderOperations"),
                                      at.at("requestHeaderOperations"), state),
        response_ops=_parse_header_ops(body.get("responseHeaderOperations"),
                                       at.at("responseHeaderOperations"), state),
        where=where,
        default_name=default_name,
    )


def _parse_action(raw: Any, at: Where, state: ParseState) -> ActionSpec | None:
    reporter = state.reporter
    body = mapping(raw, at, reporter, ACTION_KEYS, optional=False)
    if body is None:
        return None
    handler = name_text(body.get("handler"), at.at("handler"), reporter, what="a handler reference")
    instances: list[tuple[str, Where]] = []
    raw_instances = sequence(body.get("instances"), at.at("instances"), reporter)
    if raw_instances is not None:
        if not raw_instances:
            reporter.error(at.at("instances"), "an action needs at least one instance")
        for i, ref in enumerate(raw_instances):
            ref_at = at.at("instances", i)
            text = name_text(ref, ref_at, reporter, what="an instance reference")
            if text is not None:
                instances.append((text, ref_at))
    action_name = name_text(body.get("name"), at.at("name"), reporter, what="an action name",
                            required=False)
    return ActionSpec(handler, instances, action_name or "", at)


def _parse_header_ops(raw: Any, at: Where, state: ParseState) -> list[HeaderOpSpec]:
    reporter = state.reporter
    out = []
    for i, item in enumerate(sequence(raw, at, reporter) or []):
        op_at = at.at(i)
        body = mapping(item, op_at, reporter, HEADER_OP_KEYS, optional=False)
        if body is None:
            continue
        name = name_text(body.get("name"), op_at.at("name"), reporter, what="a header name")
        operation = _operation(body.get("operation"), op_at.at("operation"), state)
        values: list[tuple[str, Where]] = []
        raw_values = sequence(body.get("values"), op_at.at("values"), reporter)
        for j, value in enumerate(raw_values or []):
            text = expression_text(value, op_at.at("values", j), reporter)
            if text is not None:
                values.append((text, op_at.at("values", j)))
        if raw_values == [] and operation is not None and operation is not HeaderOperationKind.REMOVE:
            reporter.error(op_at.at("values"), f"a {operation.name} operation needs at least one value")
        if name is not None and operation is not None:
            out.append(HeaderOpSpec(name, values, operation, op_at))
    return out


def _operation(raw: Any, at: Where, state: ParseState) -> HeaderOperationKind | None:
    if raw is None:
        return HeaderOperationKind.REPLACE
    names = [k.name for k in HeaderOperationKind]
    if isinstance(raw, str) and raw.upper() in names:
        return HeaderOperationKind[raw.upper()]
    state.reporter.error(at, f"expected one of {', '.join(names)}, got {raw!r}")
    return None


__all__ = ["ACTION_KEYS", "BODY_KEYS", "HEADER_OP_KEYS", "parse_rule_body"]
