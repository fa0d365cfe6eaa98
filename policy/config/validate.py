"""Validation: adapters, templates, params, expressions and references, every error collected.

What is an error: an unknown adapter or template, params the adapter rejects, an
instance field its template lacks, an expression that does not parse or type-check,
a duplicate name, a rule reference that resolves to nothing, an instance listed
twice in an action, an instance whose template the action's handler does not support.

What is a warning: a rule match, or an instance sent to a check action, that reads
a volatile attribute (it defeats the decision cache), and a handler no rule uses
(it is not built).
"""

from __future__ import annotations

from typing import Any

from policy.attributes import VOLATILE_ATTRIBUTES, ValueType
from policy.config.expressions import compile_fields, compile_text, volatile_reads
from policy.config.model import MIXER, ConfigModel, HandlerSpec, InstanceSpec, ParseState, RuleSpec
from policy.config.references import (
    HANDLER_KIND,
    INSTANCE_KIND,
    RULE_KIND,
    Index,
    candidates,
    display_name,
    fallback_for,
    reference_namespaces,
)
from policy.config.shape import Reporter, Where
from policy.sdk import ConfigError, ParamsError, Variety, parse_params

from policy.config.catalog import Catalog


def validate(state: ParseState, host: Catalog, sources: list[str]) -> ConfigModel:
    """Resolve and check everything ``state`` holds; return the model or raise ConfigError.

    The ConfigError lists every error found and carries the warnings as ``.warnings``.
    """
    reporter = state.reporter
    handlers: Index[HandlerSpec] = Index(HANDLER_KIND)
    instances: Index[InstanceSpec] = Index(INSTANCE_KIND)
    rule_names: Index[RuleSpec] = Index(RULE_KIND)
    for handler in state.handlers:
        handler.display = display_name(handler.name, handler.kind, handler.namespace, handler.form, state.root)
        if handler.valid:
            _check_handler(handler, host, reporter)
        _unique(handlers, handler, "handler", reporter)
    for instance in state.instances:
        instance.display = display_name(instance.name, instance.kind, instance.namespace, instance.form,
                                        state.root)
        if instance.valid:
            _check_instance(instance, host, reporter)
        _unique(instances, instance, "instance", reporter)
    for rule in state.rules:
        rule.display = display_name(rule.name, RULE_KIND, rule.namespace, rule.form, state.root)
        if not rule.default_name:
            _unique(rule_names, rule, "rule", reporter)
        _check_rule(rule, handlers, instances, state, host)
    _warn_volatile_checks(state.rules, reporter)
    _check_routed_instances(state.rules, reporter)
    _check_references(state, handlers, reporter)
    used = {a.handler for r in state.rules for a in r.actions if a.handler is not None}
    pending = list(used)
    while pending:  # a handler another one delegates to is used too
        for target in pending.pop().references.values():
            if target not in used:
                used.add(target)
                pending.append(target)
    for handler in state.handlers:
        if handler.valid and handler not in used:
            reporter.warn(handler.where, f"handler {handler.display} is not used by any rule; it is not built")
    if reporter.errors:
        error = ConfigError(list(reporter.errors))
        error.warnings = list(reporter.warnings)  # type: ignore[attr-defined]
        raise error
    return ConfigModel(
        settings=state.settings,
        handlers={h.display: h for h in state.handlers},
        instances={i.display: i for i in state.instances},
        rules=list(state.rules),
        extra_documents=list(state.extras),
        warnings=list(reporter.warnings),
        sources=sources,
    )


def _check_routed_instances(rules: list[RuleSpec], reporter: Reporter) -> None:
    """Let each adapter check the instances rules route to its handler (``Adapter.validate_instances``)."""
    routed: dict[int, tuple[HandlerSpec, dict[str, str], dict[str, str]]] = {}
    for rule in rules:
        for action in rule.actions:
            handler = action.handler
            if handler is None or not handler.valid or handler.adapter is None:
                continue
            _, names, by_rule = routed.setdefault(id(handler), (handler, {}, {}))
            for instance in action.instances:
                if instance.template is not None:
                    names[instance.display] = instance.template.name
                    by_rule.setdefault(instance.display, rule.display)
    for handler, names, by_rule in routed.values():
        adapter = handler.adapter
        assert adapter is not None
        try:
            problems = list(adapter.validate_instances(handler.params, names) or ())
        except Exception as exc:  # the adapter's bug, reported as a config error
            reporter.error(handler.params_at, f"adapter {adapter.name!r}: validate_instances() raised"
                                              f" {type(exc).__name__}: {exc}")
            continue
        for problem in problems:
            rules_named = sorted({by_rule[n] for n in names if _names_instance(problem.message, n)})
            via = f" (routed here by rule {', '.join(rules_named)})" if rules_named else ""
            reporter.error(handler.params_at.at(problem.field), f"{problem.message}{via}")


def _names_instance(message: str, name: str) -> bool:
    """True when ``message`` says ``instance <name>`` (and not a longer name that starts so)."""
    needle = f"instance {name}"
    start = message.find(needle)
    while start >= 0:
        end = start + len(needle)
        if end == len(message) or not (message[end].isalnum() or message[end] in "._-"):
            return True
        start = message.find(needle, start + 1)
    return False


def _check_references(state: ParseState, handlers: Index[HandlerSpec], reporter: Reporter) -> None:
    """Resolve the handlers each handler delegates to (``Adapter.handler_references``)."""
    for handler in state.handlers:
        if not handler.valid or handler.adapter is None:
            continue
        try:
            names = list(handler.adapter.handler_references(handler.params) or ())
        except Exception as exc:  # the adapter's bug, reported as a config error
            reporter.error(handler.params_at, f"adapter {handler.adapter.name!r}: handler_references() raised"
                                              f" {type(exc).__name__}: {exc}")
            continue
        fallback = fallback_for(handler.form, state.root)
        for name in names:
            target = handlers.resolve(name, handler.namespace, fallback)
            if target is None or target is handler:
                tried = ", ".join(candidates(name, HANDLER_KIND, handler.namespace, fallback))
                problem = "is the handler itself" if target is handler else f"not found (looked for {tried})"
                reporter.error(handler.params_at, f"handler {handler.display} delegates to handler {name!r},"
                                                  f" which {problem}")
                continue
            handler.references[name] = target


def _unique(index: Index[Any], item: Any, what: str, reporter: Reporter) -> None:
    first = index.add(item.name, item.kind, item.namespace, item)
    if first is None:
        return
    item.valid = False
    at = item.where.at("metadata", "name") if item.form == MIXER else item.where.at("name")
    reporter.error(at, f"duplicate {what} {item.display}: already defined in {first.where.file}"
                       f" ({first.where.document})")


def _lookup(registry: Any, name: str) -> Any:
    """A registry entry by name; a qualified Mixer name (``listchecker.adapter.ns``) by its first part."""
    found = registry.get(name)
    if found is None and "." in name:
        found = registry.get(name.split(".", 1)[0])
    return found


def _check_handler(handler: HandlerSpec, host: Catalog, reporter: Reporter) -> None:
    registered = _lookup(host.adapters, handler.adapter_name)
    if registered is None:
        known = ", ".join(r.name for r in host.adapters) or "none"
        reporter.error(handler.adapter_at, f"unknown adapter {handler.adapter_name!r} (known: {known})")
        handler.valid = False
        return
    adapter = handler.adapter = registered.adapter
    unavailable = getattr(adapter, "unavailable", "")
    if unavailable:  # a built-in whose optional dependency is not installed
        reporter.error(handler.adapter_at, f"adapter {adapter.name!r} {unavailable}")
        handler.valid = False
        return
    try:
        params = parse_params(adapter.Params, handler.raw_params)
    except ParamsError as exc:
        for problem in exc.errors:
            reporter.error(handler.params_at.at(problem.field), problem.message)
        handler.valid = False
        return
    try:
        problems = list(adapter.validate(params) or ())
    except Exception as exc:  # a broken validate() is the adapter's bug, reported as config error
        reporter.error(handler.params_at, f"adapter {adapter.name!r}: validate() raised"
                                          f" {type(exc).__name__}: {exc}")
        problems = []
        handler.valid = False
    for problem in problems:
        reporter.error(handler.params_at.at(problem.field), problem.message)
        handler.valid = False
    handler.params = params


def _check_instance(instance: InstanceSpec, host: Catalog, reporter: Reporter) -> None:
    template = _lookup(host.templates, instance.template_name)
    if template is None:
        known = ", ".join(t.name for t in host.templates) or "none"
        reporter.error(instance.template_at, f"unknown template {instance.template_name!r} (known: {known})")
        instance.valid = False
        return
    instance.template = template
    before = len(reporter.errors)
    instance.fields = compile_fields(template.fields, instance.raw_params, instance.params_at, template.name,
                                     host.vocabulary, reporter, instance.reads,
                                     getattr(template, "defaults", None))
    if len(reporter.errors) > before:
        instance.valid = False


def _check_rule(rule: RuleSpec, handlers: Index[HandlerSpec], instances: Index[InstanceSpec],
                state: ParseState, host: Catalog) -> None:
    reporter = state.reporter
    vocabulary = host.vocabulary
    if rule.match is not None:
        rule.compiled_match = compile_text(rule.match, rule.match_at, vocabulary, reporter, ValueType.BOOL)
        if rule.compiled_match is None:
            rule.valid = False
        else:
            for name in volatile_reads(rule.compiled_match):
                reporter.warn(rule.match_at, f"the match reads {name}, which differs on every request;"
                                             " this defeats the decision cache")
    fallback = fallback_for(rule.form, state.root)
    for action in rule.actions:
        handler = None
        if action.handler_ref is not None:
            handler = handlers.resolve(action.handler_ref, rule.namespace, fallback)
            if handler is None:
                _not_found(action.handler_ref, "handler", action.where.at("handler"), rule, handlers, fallback,
                           reporter)
        action.handler = handler
        seen: set[int] = set()
        for ref, ref_at in action.instance_refs:
            instance = instances.resolve(ref, rule.namespace, fallback)
            if instance is None:
                _not_found(ref, "instance", ref_at, rule, instances, fallback, reporter)
                continue
            if id(instance) in seen:
                reporter.error(ref_at, f"instance {instance.display} is listed twice in this action")
                continue
            seen.add(id(instance))
            if handler is not None and handler.adapter is not None and instance.template is not None:
                if instance.template.name not in handler.adapter.templates:
                    reporter.error(ref_at, f"instance {instance.display} is of template"
                                           f" {instance.template.name!r}, which handler {handler.display}"
                                           f" (adapter {handler.adapter.name!r}) does not support"
                                           f" (it supports: {', '.join(handler.adapter.templates)})")
                    continue
            action.instances.append(instance)
    # Mixer's routing builder refused a header value that is not of type string; the compact
    # form (ours) converts any value to text.
    header_type = ValueType.STRING if rule.form == MIXER else None
    for op in [*rule.request_ops, *rule.response_ops]:
        for text, at in op.values:
            compiled = compile_text(text, at, vocabulary, reporter, header_type)
            if compiled is not None:
                op.compiled.append(compiled)


def _not_found(ref: str, what: str, at: Where, rule: RuleSpec, index: Index[Any], fallback: str | None,
               reporter: Reporter) -> None:
    namespaces = reference_namespaces(ref, rule.namespace, fallback)
    tried = ", ".join(candidates(ref, index.generic_kind, rule.namespace, fallback))
    names = index.names_in(namespaces)
    where = " or ".join(dict.fromkeys(namespaces))
    existing = f"{what}s in namespace {where}: {', '.join(names)}" if names else f"no {what}s in namespace {where}"
    reporter.error(at, f"{what} {ref!r} not found (looked for {tried}); {existing}")


def _warn_volatile_checks(rules: list[RuleSpec], reporter: Reporter) -> None:
    """Warn once per instance sent to a check action that reads a volatile attribute."""
    warned: set[int] = set()
    for rule in rules:
        for action in rule.actions:
            if action.handler is None:
                continue
            for instance in action.instances:
                if instance.template is None or instance.template.variety is not Variety.CHECK:
                    continue
                if id(instance) in warned:
                    continue
                warned.add(id(instance))
                for at, name in instance.reads:
                    if name in VOLATILE_ATTRIBUTES:
                        reporter.warn(at, f"instance {instance.display} is sent to check handler"
                                          f" {action.handler.display} (rule {rule.display}) and reads {name},"
                                          " which differs on every request; this defeats the decision cache")


__all__ = ["validate"]
