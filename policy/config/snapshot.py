"""A compiled config snapshot: handlers built, expressions compiled, rules indexed.

A snapshot is immutable once built and is swapped atomically on reload; in-flight
requests finish on the snapshot they started with. ``policy.config`` builds
snapshots; the runtime (dispatcher, service) and the transports only read them.
These types live in the config layer so config never imports the runtime.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.attributes import Vocabulary
from policy.logs import clip
from policy.config.instance_code import compile_builder
from policy.expr import AttributeNotFound, CompiledExpression
from policy.sdk import Adapter, ConfigError, ConfigIssue, FailMode, Handler, HeaderOperationKind, Template, Variety

log = logging.getLogger("policy.runtime")  # the dispatcher's logger: rule match failures are request-time events

#: Attributes that name the namespace a request is for, in order of preference.
DEFAULT_IDENTITY_ATTRIBUTES: tuple[str, ...] = ("destination.namespace", "destination.service.namespace")
DEFAULT_ROOT_NAMESPACE = "istio-system"


@dataclass(eq=False)
class HandlerEntry:
    """A built handler with how to call it.

    :param name: the handler's name as rules refer to it (``name.namespace`` for Mixer documents).
    :param fail_mode: what errors answer (CLOSED denies, OPEN allows uncached).
    :param timeout: seconds an async call may take before it counts as an error.
    """

    name: str
    adapter: type[Adapter]
    handler: Handler
    fail_mode: FailMode = FailMode.CLOSED
    timeout: float = 1.0
    source: str = ""
    #: Set when the handler may be shared by the next snapshot (see policy.config.compile).
    reuse_key: Any = field(default=None, compare=False)
    #: Snapshots using this handler; it is closed when the last of them closes.
    users: int = field(default=0, init=False)
    _started: bool = field(default=False, init=False)
    check_is_async: bool = field(init=False)
    quota_is_async: bool = field(init=False)
    report_is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.check_is_async = inspect.iscoroutinefunction(getattr(self.handler, "check", None))
        self.quota_is_async = inspect.iscoroutinefunction(getattr(self.handler, "quota", None))
        self.report_is_async = inspect.iscoroutinefunction(getattr(self.handler, "report", None))

    async def start(self) -> None:
        """Run the handler's ``start()`` once; errors propagate (the snapshot does not go live)."""
        start = getattr(self.handler, "start", None)
        if start is None or self._started:
            return
        result = start()
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, timeout=max(self.timeout, 30.0))
        self._started = True

    async def release(self) -> None:
        """One snapshot stops using the handler: close it when no snapshot uses it any more."""
        self.users -= 1
        if self.users <= 0:
            await self.close()

    async def close(self) -> None:
        """Close the handler; errors are logged, never raised."""
        try:
            result = self.handler.close()
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, timeout=max(self.timeout, 5.0))
        except Exception:  # a broken close must not stop the others
            log.exception("handler %s: close failed", self.name)


@dataclass(eq=False)
class InstanceBuilder:
    """Builds one instance from a bag.

    ``fields`` mirrors the template's fields: a CompiledExpression for a scalar, a
    dict of name → CompiledExpression for a value map, a dict for a nested group.
    A scalar whose expression reads an absent attribute becomes None; a map entry is
    left out. Other evaluation errors propagate (the dispatcher reports them).
    """

    name: str
    template: Template
    fields: Mapping[str, Any]
    source: str = ""
    #: The fields the build function was compiled from, and the function (see policy.config.instance_code).
    _compiled: tuple[Mapping[str, Any], Callable[[Any], Any]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._compile()

    def _compile(self) -> tuple[Mapping[str, Any], Callable[[Any], Any]]:
        compiled = self._compiled = (self.fields, compile_builder(self.name, self.template.fields, self.fields,
                                                                  self.template.factory))
        return compiled

    def build(self, bag: Any) -> Any:
        """Evaluate every field against ``bag`` and make the template's instance."""
        build = self._compiled
        if build is None or build[0] is not self.fields:  # fields replaced since: compile them again
            build = self._compile()
        return build[1](bag)

    @property
    def variety(self) -> Variety:
        """The template's variety."""
        return self.template.variety


@dataclass(frozen=True, eq=False)
class Action:
    """A handler with the instances a rule sends it."""

    handler: HandlerEntry
    instances: tuple[InstanceBuilder, ...]
    name: str = ""


@dataclass(frozen=True, eq=False)
class HeaderOperationBuilder:
    """A header operation whose values are expressions (joined with ``,`` when several)."""

    name: str
    values: tuple[CompiledExpression, ...]
    operation: HeaderOperationKind = HeaderOperationKind.REPLACE


@dataclass(eq=False)
class Rule:
    """A compiled rule: when it matches, and what it dispatches.

    ``match`` None means the rule always matches (Mixer's empty match).
    """

    name: str
    namespace: str
    match: CompiledExpression | None
    check_actions: tuple[Action, ...] = ()
    quota_actions: tuple[Action, ...] = ()
    report_actions: tuple[Action, ...] = ()
    request_header_operations: tuple[HeaderOperationBuilder, ...] = ()
    response_header_operations: tuple[HeaderOperationBuilder, ...] = ()
    source: str = ""

    def matches(self, bag: Any, failures: list[tuple[Rule, Exception]] | None = None) -> bool:
        """Evaluate the match; an absent attribute or an evaluation error means no match.

        An evaluation error (not an absent attribute, which is Mixer's plain "no match")
        is logged and appended to ``failures`` with this rule, so the caller counts it and,
        under ``settings.matchErrors: DENY``, fails the request closed.
        """
        if self.match is None:
            return True
        try:
            return self.match.evaluate(bag) is True
        except AttributeNotFound:
            return False
        except Exception as exc:  # a broken match must not break the request
            log.warning("rule %s: match %r failed: %s", self.name, self.match.text, clip(exc))
            if failures is not None:
                failures.append((self, exc))
            return False


@dataclass(frozen=True)
class QuotaBinding:
    """A quota charged on checks whose attributes match (Mixer's QuotaSpec / QuotaSpecBinding)."""

    quota: str
    charge: int
    match: CompiledExpression | None = None
    source: str = ""


class MatchErrors(enum.Enum):
    """What a rule whose match expression fails at request time (raises) means.

    NO_MATCH: the rule does not apply (Mixer's behaviour; the default). DENY: the check
    is denied with INTERNAL naming the rule, and the decision is not cached.
    Either way the failure is counted in ``policy_rule_match_errors{rule}``.
    """

    NO_MATCH = "NO_MATCH"
    DENY = "DENY"


@dataclass(frozen=True)
class CacheSettings:
    """Decision cache settings of a snapshot."""

    enabled: bool = True
    max_entries: int = 10_000
    #: Most bytes the entries may hold, their keys (request values) included.
    max_bytes: int = 64 * 1024 * 1024
    #: How long a decision no adapter contributed to (no rule matched) may be cached.
    default_valid_duration: float = 60.0
    default_valid_use_count: int = 10_000
    max_shapes: int = 64


@dataclass(eq=False)
class Snapshot:
    """Everything one config generation needs to answer requests."""

    generation: int
    vocabulary: Vocabulary
    handlers: Mapping[str, HandlerEntry]
    instances: Mapping[str, InstanceBuilder]
    rules: Sequence[Rule]
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    identity_attributes: tuple[str, ...] = DEFAULT_IDENTITY_ATTRIBUTES
    quota_bindings: Sequence[QuotaBinding] = ()
    cache: CacheSettings = field(default_factory=CacheSettings)
    #: The Envoy rate-limit service's config (:class:`policy.config.ratelimit.RateLimitConfig`), or None.
    rate_limit: Any = None
    warnings: Sequence[ConfigIssue] = ()
    sources: Sequence[str] = ()
    #: What a match expression that raises means (``settings.matchErrors``).
    match_errors: MatchErrors = MatchErrors.NO_MATCH
    #: Every attribute (and map key) an expression of this snapshot can read, as ``(name, None)``
    #: or ``(map name, key)``; None when some expression cannot say. Computed when built, so
    #: a transport can translate only what can be read.
    reads: frozenset[tuple[str, str | None]] | None = field(init=False, repr=False)
    #: What the report path (report rules' matches and instances, and their namespace lookup)
    #: can read of a decision-log record, in the form of ``reads``; None when some expression
    #: cannot say. The decision log copies only these attributes into a record.
    report_reads: frozenset[tuple[str, str | None]] | None = field(init=False, repr=False)
    _check_index: "_RuleIndex" = field(init=False, repr=False)
    _report_index: "_RuleIndex" = field(init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        # Checks consider only rules that can change a check's answer, so a report-only
        # rule's match is neither evaluated on the check path nor part of its cache key.
        self._check_index = _RuleIndex(
            [r for r in self.rules if r.check_actions or r.quota_actions
             or r.request_header_operations or r.response_header_operations],
            self.root_namespace)
        self._report_index = _RuleIndex([r for r in self.rules if r.report_actions], self.root_namespace)
        self.reads = self._reads()
        self.report_reads = self._report_reads()

    def _reads(self) -> frozenset[tuple[str, str | None]] | None:
        identity = any(rule.namespace != self.root_namespace for rule in self.rules)
        expressions: list[Any] = []
        for rule in self.rules:
            expressions.append(rule.match)
            expressions.extend(v for op in (*rule.request_header_operations, *rule.response_header_operations)
                               for v in op.values)
        # Every instance (report rules too: the decision log sends checks through them).
        expressions.extend(builder.fields for builder in self.instances.values())
        expressions.extend(action_builder.fields for rule in self.rules
                           for action in (*rule.check_actions, *rule.quota_actions, *rule.report_actions)
                           for action_builder in action.instances)
        expressions.extend(binding.match for binding in self.quota_bindings)
        return self._referenced(expressions, identity)

    def _report_reads(self) -> frozenset[tuple[str, str | None]] | None:
        report_rules = [rule for rule in self.rules if rule.report_actions]
        expressions: list[Any] = [rule.match for rule in report_rules]
        expressions.extend(builder.fields for rule in report_rules for action in rule.report_actions
                           for builder in action.instances)
        return self._referenced(expressions, bool(self._report_index.by_namespace))

    def _referenced(self, expressions: Iterable[Any], identity: bool) -> frozenset[tuple[str, str | None]] | None:
        """What ``expressions`` (and, with ``identity``, the namespace lookup) can read; None when one cannot say."""
        reads: set[tuple[str, str | None]] = set()
        if identity:  # only then are the identity attributes read (see _RuleIndex.rules_for)
            reads.update((name, None) for name in self.identity_attributes)

        def add(expression: Any) -> bool:
            if expression is None:
                return True
            if isinstance(expression, Mapping):  # an instance's value map or nested group
                return all(add(e) for e in expression.values())
            referenced = getattr(expression, "referenced", None)
            if referenced is None:
                return False
            reads.update(referenced)
            return True

        return frozenset(reads) if all(add(e) for e in expressions) else None

    def namespace_of(self, bag: Any) -> str | None:
        """The namespace a request is for (the first identity attribute present), recording reads."""
        for name in self.identity_attributes:
            value = bag.get(name)
            if value:
                return value
        return None

    def rules_for(self, bag: Any) -> tuple[Rule, ...]:
        """The rules that can affect a check: root-namespace rules, then the request namespace's."""
        return self._check_index.rules_for(bag, self)

    def report_rules_for(self, bag: Any) -> tuple[Rule, ...]:
        """The rules with report actions that apply to a request, in the same order."""
        return self._report_index.rules_for(bag, self)

    async def start(self) -> None:
        """Start every handler; the first failure raises ConfigError naming the handler."""
        results = await asyncio.gather(*(h.start() for h in self.handlers.values()), return_exceptions=True)
        issues = [
            ConfigIssue(entry.source, f"handler/{entry.name}", "", f"failed to start: {type(r).__name__}: {r}")
            for entry, r in zip(self.handlers.values(), results) if isinstance(r, BaseException)
        ]
        if issues:
            raise ConfigError(issues)

    async def close(self) -> None:
        """Release every handler of this snapshot (closing those no other snapshot shares)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(h.release() for h in self.handlers.values()))


class _RuleIndex:
    """Rules by namespace: root-namespace rules apply everywhere, a namespace's own come after them."""

    __slots__ = ("root", "by_namespace")

    def __init__(self, rules: Sequence[Rule], root_namespace: str) -> None:
        self.root = tuple(r for r in rules if r.namespace == root_namespace)
        grouped: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.namespace != root_namespace:
                grouped.setdefault(rule.namespace, []).append(rule)
        self.by_namespace = {ns: self.root + tuple(own) for ns, own in grouped.items()}

    def rules_for(self, bag: Any, snapshot: Snapshot) -> tuple[Rule, ...]:
        # Only read the identity attributes when some rule is namespaced: reading them
        # would otherwise narrow every cache key for nothing.
        if not self.by_namespace:
            return self.root
        namespace = snapshot.namespace_of(bag)
        if namespace is None:
            return self.root
        return self.by_namespace.get(namespace, self.root)
