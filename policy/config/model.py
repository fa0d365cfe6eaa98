"""The validated config model: handlers, instances and rules from both document forms.

The parsers (:mod:`policy.config.compact`, :mod:`policy.config.mixer`) fill the
``*Spec`` records with what the documents say; :mod:`policy.config.validate`
resolves adapters, templates, params, expressions and references in place and
returns a :class:`ConfigModel`, which :mod:`policy.config.compile` turns into a
:class:`~policy.config.snapshot.Snapshot`.

Every entity has a Mixer-style key ``name.kind.namespace``: kind is ``handler``,
``instance`` or ``rule`` for the generic kinds and the compact form, or the adapter
(template) name for Mixer's legacy per-adapter (per-template) kinds.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from policy.config.shape import Reporter, Where
from policy.config.snapshot import DEFAULT_IDENTITY_ATTRIBUTES, DEFAULT_ROOT_NAMESPACE, CacheSettings, MatchErrors
from policy.sdk import Adapter, ConfigIssue, FailMode, HeaderOperationKind, Template, param

COMPACT = "compact"
MIXER = "mixer"

DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Settings:
    """Config-wide settings: the root namespace, identity attributes and the decision cache."""

    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    identity_attributes: tuple[str, ...] = DEFAULT_IDENTITY_ATTRIBUTES
    cache: CacheSettings = field(default_factory=CacheSettings)
    match_errors: MatchErrors = MatchErrors.NO_MATCH


# --- the schema of the compact ``settings`` section (parsed with parse_params) ---


@dataclass(frozen=True)
class CacheParams:
    """The ``settings.cache`` section."""

    enabled: bool = param(True, doc="Cache check decisions.")
    max_entries: int = param(10_000, doc="Most decisions kept.")
    max_bytes: int = param(64 * 1024 * 1024, doc=(
        "Most bytes the kept decisions may hold, keys (the request values read) included; "
        "least recently used go first."))
    default_valid_duration: _dt.timedelta = param(
        _dt.timedelta(seconds=60), doc="How long a decision no adapter contributed to is kept.")
    default_valid_use_count: int = param(10_000, doc="How often such a decision is reused.")
    max_shapes: int = param(64, doc="Most distinct sets of read attributes kept.")


@dataclass(frozen=True)
class SettingsParams:
    """The compact ``settings`` section."""

    root_namespace: str = param(DEFAULT_ROOT_NAMESPACE, doc="Rules here apply to every request.")
    identity_attributes: list[str] = param(
        default_factory=lambda: list(DEFAULT_IDENTITY_ATTRIBUTES),
        doc="Attributes naming a request's namespace, in order of preference.")
    cache: CacheParams = param(default_factory=CacheParams, doc="The decision cache.")
    match_errors: MatchErrors = param(MatchErrors.NO_MATCH,
                                      doc="A rule whose match expression raises: NO_MATCH (Mixer) or DENY.")
    rate_limit: Any = param(None, doc="The Envoy rate-limit service: handler and the service's options "
                                      "(see policy.config.ratelimit.RateLimitSettings; checked by policy.config.ratelimit).")


# --- entities ------------------------------------------------------------------


@dataclass(eq=False)
class HandlerSpec:
    """A handler: an adapter with params, and (once validated) the parsed params."""

    name: str
    namespace: str
    kind: str
    form: str
    adapter_name: str
    raw_params: Any
    where: Where
    adapter_at: Where
    params_at: Where
    fail_mode: FailMode = FailMode.CLOSED
    timeout: float = DEFAULT_TIMEOUT
    display: str = ""
    adapter: type[Adapter] | None = None
    params: Any = None
    valid: bool = True
    #: Handlers this one delegates to (its adapter's ``handler_references``), by the name in its params.
    references: dict[str, "HandlerSpec"] = field(default_factory=dict)

    @property
    def file(self) -> str:
        """The file the handler is defined in."""
        return self.where.file


@dataclass(eq=False)
class InstanceSpec:
    """An instance: a template with one expression per field, compiled once validated.

    ``fields`` mirrors :attr:`InstanceBuilder.fields`; ``reads`` lists each attribute
    an expression reads with the field path it is read in.
    """

    name: str
    namespace: str
    kind: str
    form: str
    template_name: str
    raw_params: Any
    where: Where
    template_at: Where
    params_at: Where
    display: str = ""
    template: Template | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    reads: list[tuple[Where, str]] = field(default_factory=list)
    valid: bool = True


@dataclass(eq=False)
class ActionSpec:
    """One action of a rule: a handler reference and instance references."""

    handler_ref: str | None
    instance_refs: list[tuple[str, Where]]
    name: str
    where: Where
    handler: HandlerSpec | None = None
    instances: list[InstanceSpec] = field(default_factory=list)


@dataclass(eq=False)
class HeaderOpSpec:
    """A header operation of a rule; ``values`` are expression texts, compiled once validated."""

    name: str
    values: list[tuple[str, Where]]
    operation: HeaderOperationKind
    where: Where
    compiled: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class RuleSpec:
    """A rule: when (match) and what (actions, header operations)."""

    name: str
    namespace: str
    form: str
    match: str | None
    match_at: Where
    actions: list[ActionSpec]
    request_ops: list[HeaderOpSpec]
    response_ops: list[HeaderOpSpec]
    where: Where
    default_name: bool = False
    display: str = ""
    compiled_match: Any = None
    valid: bool = True

    @property
    def kind(self) -> str:
        """The kind part of a rule's key: always ``rule``."""
        return "rule"


@dataclass(frozen=True)
class ExtraDocument:
    """A document that is not policy config (an AuthorizationPolicy, a QuotaSpec ...), kept for plugins."""

    file: str
    document: str
    data: dict[str, Any]

    def for_plugins(self) -> dict[str, Any]:
        """The document as handlers see it in ``BuildContext.documents``: ``_source`` added."""
        return {**self.data, "_source": self.file}


@dataclass
class ParseState:
    """What the document parsers collect, before validation."""

    reporter: Reporter
    settings: Settings
    handlers: list[HandlerSpec] = field(default_factory=list)
    instances: list[InstanceSpec] = field(default_factory=list)
    rules: list[RuleSpec] = field(default_factory=list)
    extras: list[ExtraDocument] = field(default_factory=list)
    rules_per_file: dict[str, int] = field(default_factory=dict)
    unclaimed_kinds: set[str] = field(default_factory=set)

    @property
    def root(self) -> str:
        """The root namespace."""
        return self.settings.root_namespace

    def next_rule_index(self, file: str) -> int:
        """The index of the next compact rule of ``file`` (for its default name)."""
        index = self.rules_per_file.get(file, 0)
        self.rules_per_file[file] = index + 1
        return index


@dataclass
class ConfigModel:
    """A validated config: every reference resolved, every expression compiled.

    ``handlers`` and ``instances`` are keyed by their display names (what
    :class:`~policy.config.snapshot.Snapshot` keys them by); ``warnings`` are
    issues of severity ``warning``; ``sources`` are the files read.
    """

    settings: Settings
    handlers: dict[str, HandlerSpec]
    instances: dict[str, InstanceSpec]
    rules: list[RuleSpec]
    extra_documents: list[ExtraDocument]
    warnings: list[ConfigIssue]
    sources: list[str]
    #: The Envoy rate-limit service's config (policy.config.ratelimit.RateLimitConfig), or None.
    rate_limit: Any = None
    #: Quotas charged per request, from QuotaSpec / QuotaSpecBinding documents (policy.config.quota_specs).
    quota_bindings: list[Any] = field(default_factory=list)

    def summary(self) -> str:
        """One line counting what the config holds, for ``policy validate``."""
        parts = [_count(len(self.handlers), "handler"), _count(len(self.instances), "instance"),
                 _count(len(self.rules), "rule")]
        if self.extra_documents:
            parts.append(_count(len(self.extra_documents), "other document"))
        parts.append(_count(len(self.warnings), "warning"))
        return ", ".join(parts)

    @property
    def used_handlers(self) -> list[str]:
        """Display names of the handlers some rule's action refers to, in definition order."""
        used = {a.handler.display for r in self.rules for a in r.actions if a.handler is not None}
        if self.rate_limit is not None:
            used.add(self.rate_limit.settings.handler)  # the rate-limit service's handler is built too
        pending = [self.handlers[name] for name in used if name in self.handlers]
        while pending:  # handlers a used handler delegates to are built too
            for target in pending.pop().references.values():
                if target.display not in used:
                    used.add(target.display)
                    pending.append(target)
        return [name for name in self.handlers if name in used]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


__all__ = [
    "COMPACT", "MIXER", "ActionSpec", "CacheParams", "ConfigModel", "ExtraDocument",
    "HandlerSpec", "HeaderOpSpec", "InstanceSpec", "ParseState", "RuleSpec", "Settings",
    "SettingsParams",
]
