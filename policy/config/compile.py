"""Turning a validated :class:`ConfigModel` into a :class:`Snapshot`: handlers built, rules assembled.

Only handlers some rule uses are built (as Mixer did); each gets a
:class:`~policy.sdk.BuildContext` whose ``documents`` holds the config's
extra documents (an AuthorizationPolicy for an RBAC adapter, ...), each with
``_source`` naming its file. When a build fails, the handlers already built are
closed and a ConfigError names every handler that failed.

Across a reload, a handler whose adapter sets ``keep_across_reloads = True`` (the
quota adapters: their counters live in the handler) and whose name, adapter,
params, fail mode and timeout are unchanged is not built again: the new snapshot
shares the previous one's, which is closed when the last snapshot using it is.

An action's instances may be of several varieties (a check and a report template
of one adapter): it becomes one :class:`Action` per variety, with the same handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from policy.config.model import ActionSpec, ConfigModel, HandlerSpec, RuleSpec
from policy.config.snapshot import Action, HandlerEntry, HeaderOperationBuilder, InstanceBuilder, Rule, Snapshot
from policy.sdk import BuildContext, Clock, ConfigError, ConfigIssue, ParamsError, Variety
from policy.sdk.extras import install_hint, missing_extra

from policy.config.catalog import Catalog

log = logging.getLogger("policy.config")

# Close tasks scheduled on a running loop, kept referenced until they finish.
_closing: set[asyncio.Task[Any]] = set()


def _reuse_key(spec: HandlerSpec) -> tuple[Any, ...] | None:
    """What must be unchanged for a handler to be kept across a reload (None: always rebuilt)."""
    if not getattr(spec.adapter, "keep_across_reloads", False) or spec.references:
        return None
    return (spec.display, spec.adapter_name, spec.params, spec.fail_mode, spec.timeout)


def build_snapshot(model: ConfigModel, host: Catalog, *, generation: int = 1,
                   previous: Snapshot | None = None) -> Snapshot:
    """Build the handlers of ``model`` and assemble a :class:`Snapshot`.

    ``previous``: the snapshot in force, whose unchanged reusable handlers are shared
    (see the module docstring). Raises ConfigError naming each handler whose adapter
    failed to build it (after closing the handlers built here).
    """
    documents = [extra.for_plugins() for extra in model.extra_documents]
    entries: dict[str, HandlerEntry] = {}
    fresh: list[HandlerEntry] = []
    issues: list[ConfigIssue] = []
    delegates: dict[str, dict[str, Any]] = {}
    kept = [e for e in (previous.handlers.values() if previous is not None else ()) if e.reuse_key is not None]
    try:
        for name in model.used_handlers:
            spec = model.handlers[name]
            key = _reuse_key(spec)
            entry = next((e for e in kept if e.reuse_key == key), None) if key is not None else None
            if entry is None:
                entry = _build(spec, documents, issues, delegates.setdefault(name, {}), host.build_extras)
                if entry is not None:
                    entry.reuse_key = key
                    fresh.append(entry)
            if entry is not None:
                entries[name] = entry
        if issues:
            raise ConfigError(issues)
        for name, view in delegates.items():  # every handler is built: hand each its delegates
            view.update((ref, entries[target.display].handler)
                        for ref, target in model.handlers[name].references.items())
        instances = {
            name: InstanceBuilder(name, spec.template, spec.fields, source=spec.where.file)
            for name, spec in model.instances.items()
            if spec.template is not None
        }
        rules = [_rule(rule, entries, instances) for rule in model.rules]
    except BaseException:
        close_handlers(fresh)
        raise
    for entry in entries.values():
        entry.users += 1
    settings = model.settings
    return Snapshot(
        generation=generation,
        vocabulary=host.vocabulary,
        handlers=entries,
        instances=instances,
        rules=rules,
        root_namespace=settings.root_namespace,
        identity_attributes=settings.identity_attributes,
        quota_bindings=tuple(model.quota_bindings),
        cache=settings.cache,
        match_errors=settings.match_errors,
        rate_limit=model.rate_limit,
        warnings=tuple(model.warnings),
        sources=tuple(model.sources),
    )


def _build(spec: HandlerSpec, documents: list[dict[str, Any]], issues: list[ConfigIssue],
           delegates: dict[str, Any], extras: dict[str, Any]) -> HandlerEntry | None:
    adapter = spec.adapter
    assert adapter is not None, "validated handlers have an adapter"
    context = BuildContext(
        handler=spec.display,
        config_dir=Path(spec.where.file).parent,
        logger=logging.getLogger(f"policy.adapter.{spec.display}"),
        clock=extras.get("clock") or Clock(),  # tests put a FakeClock's clock in host.build_extras
        extras=dict(extras),
        documents=list(documents),
        metrics_registry=extras.get("metrics_registry"),
        handlers=delegates,
    )
    where = spec.where
    try:
        handler = adapter.build(spec.params, context)
    except ParamsError as exc:
        for problem in exc.errors:
            field = ".".join(p for p in (spec.params_at.field, problem.field) if p)
            issues.append(ConfigIssue(where.file, where.document, field,
                                      f"handler {spec.display}: {problem.message}"))
        return None
    except ConfigError as exc:
        issues.extend(ConfigIssue(where.file, where.document, i.field or spec.params_at.field,
                                  f"handler {spec.display}: {i.message}") for i in exc.issues)
        return None
    except Exception as exc:
        log.debug("handler %s: build failed", spec.display, exc_info=True)
        extra = missing_extra(exc)
        if extra is not None:  # an optional dependency imported at build is not installed
            message = (f"adapter {adapter.name!r} needs the {extra!r} extra"
                       f" ({getattr(exc, 'name', '')} is not installed): {install_hint(extra)}")
        else:
            message = f"adapter {adapter.name!r} failed to build it: {type(exc).__name__}: {exc}"
        issues.append(ConfigIssue(where.file, where.document, spec.params_at.field,
                                  f"handler {spec.display}: {message}"))
        return None
    if handler is None:
        issues.append(ConfigIssue(where.file, where.document, "",
                                  f"handler {spec.display}: adapter {adapter.name!r} built nothing (None)"))
        return None
    return HandlerEntry(spec.display, adapter, handler, fail_mode=spec.fail_mode, timeout=spec.timeout,
                        source=where.file)


def _rule(spec: RuleSpec, handlers: dict[str, HandlerEntry], instances: dict[str, InstanceBuilder]) -> Rule:
    by_variety: dict[Variety, list[Action]] = {v: [] for v in Variety}
    for action in spec.actions:
        for variety, action_out in _split(action, handlers, instances):
            by_variety[variety].append(action_out)
    return Rule(
        name=spec.display,
        namespace=spec.namespace,
        match=spec.compiled_match,
        check_actions=tuple(by_variety[Variety.CHECK]),
        quota_actions=tuple(by_variety[Variety.QUOTA]),
        report_actions=tuple(by_variety[Variety.REPORT]),
        request_header_operations=tuple(
            HeaderOperationBuilder(op.name, tuple(op.compiled), op.operation) for op in spec.request_ops),
        response_header_operations=tuple(
            HeaderOperationBuilder(op.name, tuple(op.compiled), op.operation) for op in spec.response_ops),
        source=spec.where.file,
    )


def _split(action: ActionSpec, handlers: dict[str, HandlerEntry],
           instances: dict[str, InstanceBuilder]) -> list[tuple[Variety, Action]]:
    assert action.handler is not None, "validated actions have a handler"
    entry = handlers[action.handler.display]
    groups: dict[Variety, list[InstanceBuilder]] = {}
    for spec in action.instances:
        builder = instances[spec.display]
        groups.setdefault(builder.variety, []).append(builder)
    return [(variety, Action(entry, tuple(builders), action.name)) for variety, builders in groups.items()]


def close_handlers(entries: Iterable[HandlerEntry]) -> None:
    """Close handlers from synchronous code: now when no event loop runs, else as a task on it.

    Errors are logged by :meth:`HandlerEntry.close`, never raised.
    """
    pending = list(entries)
    if not pending:
        return

    async def close_all() -> None:
        """Close every handler concurrently."""
        await asyncio.gather(*(entry.close() for entry in pending))

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(close_all())
        return
    task = loop.create_task(close_all())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


__all__ = ["build_snapshot", "close_handlers"]
