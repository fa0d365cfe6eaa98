"""Hooking the rate-limit service into config loading: RLS documents and ``settings.rateLimit``.

Called by :func:`policy.config.parse_config`: RLS documents (a top-level ``domain``)
are read here instead of as compact documents, ``settings.rateLimit`` is checked
and its handler resolved, and every problem joins the config's other errors.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from policy.config.references import display_name
from policy.config.shape import Reporter, Where
from policy.config.ratelimit.limits import RateLimitConfig, RateLimitSettings, compile_rate_limit, is_ratelimit_document
from policy.sdk import ParamsError, parse_params

from policy.config.documents import Document
from policy.config.model import ConfigModel, ParseState
from policy.config.catalog import Catalog


def read_rate_limit(documents: list[Document], state: ParseState, host: Catalog) -> RateLimitConfig | None:
    """Read the RLS documents and ``settings.rateLimit``; None when the service is not configured."""
    reporter: Reporter = state.reporter
    rls = [doc for doc in documents if is_ratelimit_document(doc.data)]
    raw, at = None, None
    for doc in documents:
        data = doc.data
        if isinstance(data, dict) and "kind" not in data and isinstance(data.get("settings"), dict) \
                and "rateLimit" in data["settings"]:
            raw, at = data["settings"]["rateLimit"], Where(doc.file, "settings", "rateLimit")
            break
    if raw is None:
        for doc in rls:
            reporter.warn(doc.where, "rate-limit document ignored: settings.rateLimit names no handler to count it")
        return None
    assert at is not None
    try:
        settings = parse_params(RateLimitSettings, raw)
    except ParamsError as exc:
        for problem in exc.errors:
            reporter.error(at.at(problem.field), problem.message)
        return None
    for field, name in (("limitHeader", settings.limit_header), ("remainingHeader", settings.remaining_header),
                        ("resetHeader", settings.reset_header)):
        if not name or any(c not in _TOKEN for c in name):
            reporter.error(at.at(field), f"not an HTTP header name: {name!r}")
    if not 0.0 <= settings.near_limit_ratio <= 1.0:
        reporter.error(at.at("nearLimitRatio"), f"expected a ratio from 0 to 1, got {settings.near_limit_ratio!r}")
    spec = _handler(settings.handler, state)
    if spec is None:
        reporter.error(at.at("handler"), f"no handler named {settings.handler!r}")
    else:
        registered = host.adapters.get(spec.adapter_name)
        if registered is not None and "quota" not in registered.adapter.templates:
            reporter.error(at.at("handler"), f"handler {settings.handler!r} (adapter {spec.adapter_name}) "
                                             "does not count quotas; use a memquota or redisquota handler")
    # Labelled by position too: two files' documents may share a label (same line), never a number.
    by_label = {}
    for index, doc in enumerate(rls):
        domain = doc.data.get("domain")
        label = f"{doc.file}: {doc.label}" + (f" (domain {domain})" if isinstance(domain, str) and domain else "")
        if label in by_label:
            label += f" #{index + 1}"
        by_label[label] = doc

    def error(label: str, field: str, message: str) -> None:
        doc = by_label[label]
        reporter.error(Where(doc.file, label[len(doc.file) + 2:], field), message)

    config = compile_rate_limit([(label, doc.data) for label, doc in by_label.items()], settings, error)
    config.handler_spec = spec
    return config


#: The characters of an HTTP header name (RFC 9110 token).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _handler(reference: str, state: ParseState) -> Any:
    matches = [h for h in state.handlers
               if reference in (h.name, display_name(h.name, h.kind, h.namespace, h.form, state.root))]
    return matches[0] if len(matches) == 1 else None


def attach_rate_limit(model: ConfigModel, config: RateLimitConfig | None) -> None:
    """Put the service's config on the validated model, naming its handler by display name."""
    if config is None:
        return
    spec = config.handler_spec
    if spec is not None:
        config.settings = replace(config.settings, handler=spec.display)
        model.warnings = [w for w in model.warnings
                          if not (w.message.startswith(f"handler {spec.display} is not used by any rule"))]
    model.rate_limit = config


__all__ = ["attach_rate_limit", "is_ratelimit_document", "read_rate_limit"]
