"""The compact form: one mapping with ``settings``, ``handlers``, ``instances`` and ``rules``.

::

    settings:
      rootNamespace: istio-system
      identityAttributes: [destination.namespace, destination.service.namespace]
      cache: {enabled: true, maxEntries: 10000, defaultValidDuration: 60s, defaultValidUseCount: 10000}
    handlers:
      - {name: whitelist, adapter: listchecker, failMode: CLOSED, timeout: 1s, params: {...}}
    instances:
      - {name: source-ip, template: listentry, params: {value: source.ip | ip("0.0.0.0")}}
    rules:
      - name: check-ip
        namespace: default
        match: destination.service.host == "x"
        actions: [{handler: whitelist, instances: [source-ip]}]

Handlers and instances may name a ``namespace`` (default: the root namespace);
rules default to the root namespace and to the name ``rule-<index>`` (their
position among the file's compact rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.attributes import ValueType, Vocabulary
from policy.config.documents import Document
from policy.config.model import (
    COMPACT,
    DEFAULT_TIMEOUT,
    HandlerSpec,
    InstanceSpec,
    ParseState,
    Settings,
    SettingsParams,
)
from policy.config.references import HANDLER_KIND, INSTANCE_KIND
from policy.config.rulebody import BODY_KEYS, parse_rule_body
from policy.config.shape import Reporter, Where, mapping, name_text, sequence
from policy.config.snapshot import CacheSettings
from policy.sdk import FailMode, ParamsError, parse_duration, parse_params

COMPACT_KEYS = ("settings", "handlers", "instances", "rules")
HANDLER_KEYS = ("name", "adapter", "namespace", "failMode", "timeout", "params")
INSTANCE_KEYS = ("name", "template", "namespace", "params")
RULE_KEYS = ("name", "namespace", *BODY_KEYS)


def is_compact(data: Any) -> bool:
    """Tell whether a document is in the compact form (a mapping that is no Kubernetes object)."""
    return isinstance(data, Mapping) and "kind" not in data and "apiVersion" not in data


def parse_settings(documents: list[Document], reporter: Reporter, vocabulary: Vocabulary) -> Settings:
    """Find and check the one ``settings`` section of the config (defaults when there is none)."""
    first: Document | None = None
    settings = Settings()
    for doc in documents:
        if not (is_compact(doc.data) and "settings" in doc.data):
            continue
        at = Where(doc.file, "settings")
        if first is not None:
            reporter.error(at, f"settings are given twice (first in {first.file}, line {first.line});"
                               " give them once for the whole config")
            continue
        first = doc
        try:
            params = parse_params(SettingsParams, doc.data["settings"])
        except ParamsError as exc:
            for error in exc.errors:
                reporter.error(at.at(error.field), error.message)
            continue
        settings = _settings(params, at, reporter, vocabulary)
    return settings


def _settings(params: SettingsParams, at: Where, reporter: Reporter, vocabulary: Vocabulary) -> Settings:
    name_text(params.root_namespace, at.at("rootNamespace"), reporter, what="a namespace", dots=False)
    if not params.identity_attributes:
        reporter.error(at.at("identityAttributes"), "at least one attribute is required")
    for i, name in enumerate(params.identity_attributes):
        value_type = vocabulary.get(name)
        if value_type is None:
            reporter.error(at.at("identityAttributes", i), f"unknown attribute {name!r}")
        elif value_type is not ValueType.STRING:
            reporter.error(at.at("identityAttributes", i),
                           f"attribute {name!r} is {value_type.name}; a namespace attribute must be STRING")
    cache = params.cache
    for key, value in (("maxEntries", cache.max_entries), ("defaultValidUseCount", cache.default_valid_use_count),
                       ("maxShapes", cache.max_shapes), ("maxBytes", cache.max_bytes)):
        if value <= 0:
            reporter.error(at.at("cache", key), f"must be positive, got {value}")
    return Settings(
        root_namespace=params.root_namespace,
        identity_attributes=tuple(params.identity_attributes),
        match_errors=params.match_errors,
        cache=CacheSettings(
            enabled=cache.enabled,
            max_entries=cache.max_entries,
            max_bytes=cache.max_bytes,
            default_valid_duration=cache.default_valid_duration.total_seconds(),
            default_valid_use_count=cache.default_valid_use_count,
            max_shapes=cache.max_shapes,
        ),
    )


def parse_compact(doc: Document, state: ParseState) -> None:
    """Collect the handlers, instances and rules of one compact document into ``state``."""
    reporter = state.reporter
    data = mapping(doc.data, doc.where, reporter, COMPACT_KEYS)
    if data is None:
        return
    prefix = f"document[{doc.index}] " if doc.index or doc.item is not None else ""
    for section, parse in (("handlers", _handler), ("instances", _instance), ("rules", _rule)):
        items = sequence(data.get(section), Where(doc.file, prefix + section), reporter)
        for i, raw in enumerate(items or []):
            name = raw.get("name") if isinstance(raw, Mapping) else None
            label = f"{prefix}{section}[{i}]" + (f" ({name})" if isinstance(name, (str, int)) else "")
            parse(raw, Where(doc.file, label), state)


def _handler(raw: Any, where: Where, state: ParseState) -> None:
    reporter = state.reporter
    before = len(reporter.errors)
    body = mapping(raw, where, reporter, HANDLER_KEYS, optional=False)
    if body is None:
        return
    name = name_text(body.get("name"), where.at("name"), reporter, dots=False)
    namespace = name_text(body.get("namespace"), where.at("namespace"), reporter, what="a namespace",
                          required=False, dots=False)
    adapter = name_text(body.get("adapter"), where.at("adapter"), reporter, what="an adapter name")
    fail_mode = _fail_mode(body.get("failMode"), where.at("failMode"), reporter)
    timeout = _timeout(body.get("timeout"), where.at("timeout"), reporter)
    if name is None:
        return
    state.handlers.append(HandlerSpec(
        name=name, namespace=namespace or state.root, kind=HANDLER_KIND, form=COMPACT,
        adapter_name=adapter or "", raw_params=body.get("params"), where=where,
        adapter_at=where.at("adapter"), params_at=where.at("params"),
        fail_mode=fail_mode, timeout=timeout, valid=len(reporter.errors) == before,
    ))


def _fail_mode(raw: Any, at: Where, reporter: Reporter) -> FailMode:
    if raw is None:
        return FailMode.CLOSED
    if isinstance(raw, str) and raw.upper() in FailMode.__members__:
        return FailMode[raw.upper()]
    reporter.error(at, f"expected CLOSED or OPEN, got {raw!r}")
    return FailMode.CLOSED


def _timeout(raw: Any, at: Where, reporter: Reporter) -> float:
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = parse_duration(raw).total_seconds()
    except ValueError as exc:
        reporter.error(at, str(exc))
        return DEFAULT_TIMEOUT
    if seconds <= 0:
        reporter.error(at, f"a timeout must be positive, got {raw!r}")
        return DEFAULT_TIMEOUT
    return seconds


def _instance(raw: Any, where: Where, state: ParseState) -> None:
    reporter = state.reporter
    before = len(reporter.errors)
    body = mapping(raw, where, reporter, INSTANCE_KEYS, optional=False)
    if body is None:
        return
    name = name_text(body.get("name"), where.at("name"), reporter, dots=False)
    namespace = name_text(body.get("namespace"), where.at("namespace"), reporter, what="a namespace",
                          required=False, dots=False)
    template = name_text(body.get("template"), where.at("template"), reporter, what="a template name")
    if name is None:
        return
    state.instances.append(InstanceSpec(
        name=name, namespace=namespace or state.root, kind=INSTANCE_KIND, form=COMPACT,
        template_name=template or "", raw_params=body.get("params"), where=where,
        template_at=where.at("template"), params_at=where.at("params"),
        valid=len(reporter.errors) == before,
    ))


def _rule(raw: Any, where: Where, state: ParseState) -> None:
    reporter = state.reporter
    index = state.next_rule_index(where.file)
    if not (isinstance(raw, Mapping) and raw.get("name") is not None):
        where = where.relabel(f"{where.document} (rule-{index})")
    before = len(reporter.errors)
    body = mapping(raw, where, reporter, RULE_KEYS, optional=False)
    if body is None:
        return
    name = name_text(body.get("name"), where.at("name"), reporter, what="a rule name", required=False,
                     dots=False)
    namespace = name_text(body.get("namespace"), where.at("namespace"), reporter, what="a namespace",
                          required=False, dots=False)
    rule = parse_rule_body(body, where, state, name=name or f"rule-{index}",
                           namespace=namespace or state.root, form=COMPACT, where=where,
                           default_name=name is None)
    rule.valid = len(reporter.errors) == before
    state.rules.append(rule)


__all__ = ["COMPACT_KEYS", "is_compact", "parse_compact", "parse_settings"]
