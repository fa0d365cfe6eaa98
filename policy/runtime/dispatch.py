"""Dispatch: match rules, build instances, call handlers, combine, cache.

One :class:`Dispatcher` serves one snapshot. Sync handler methods are called
inline (they are in-memory by contract); async ones are awaited concurrently under
the handler's timeout. An adapter that raises or times out becomes a status naming
the handler, and the handler's fail mode decides whether that denies (CLOSED, the
default) or allows without caching (OPEN).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policy.attributes import AttributeBag, LazyReferences, RecordingBag
from policy.logs import clip
from policy.runtime.cache import DecisionCache
from policy.runtime.decision import Decision, HandlerCall, combine, new_decision_id
from policy.config.snapshot import Action, HandlerEntry, MatchErrors, Rule, Snapshot
from policy.sdk import (
    AdapterError,
    CheckResult,
    Code,
    FailMode,
    HeaderOperation,
    HeaderOperationKind,
    QuotaArgs,
    QuotaResult,
    Status,
)

log = logging.getLogger("policy.dispatch")


def _error_result(entry: HandlerEntry, status: Status) -> CheckResult:
    if entry.fail_mode is FailMode.OPEN:
        # Allowed because the handler failed open: never cache it.
        return CheckResult.allow(valid_duration=0.0)
    return CheckResult(status, valid_duration=0.0)


def _failure(entry: HandlerEntry, exc: BaseException, what: str, observer: Any = None) -> Status:
    if observer is not None:
        observer.handler_failed(entry.name, what, isinstance(exc, TimeoutError))
    if isinstance(exc, AdapterError):
        return Status(exc.code, exc.message)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Status(Code.DEADLINE_EXCEEDED, f"{what} timed out after {entry.timeout:g}s")
    log.error("handler %s (adapter %s): %s failed", entry.name, entry.adapter.name, what, exc_info=exc)
    return Status(Code.INTERNAL, f"adapter {entry.adapter.name} failed: {type(exc).__name__}: {exc}")


async def _call_async_check(entry: HandlerEntry, instance: Any, observer: Any = None) -> CheckResult:
    try:
        return await asyncio.wait_for(entry.handler.check(instance), entry.timeout)
    except Exception as exc:
        return _error_result(entry, _failure(entry, exc, "check", observer))


def _call_check(entry: HandlerEntry, instance: Any, observer: Any = None) -> CheckResult:
    try:
        result = entry.handler.check(instance)
    except Exception as exc:
        return _error_result(entry, _failure(entry, exc, "check", observer))
    if not isinstance(result, CheckResult):
        return _error_result(entry, Status(
            Code.INTERNAL, f"adapter {entry.adapter.name} returned {type(result).__name__}, not CheckResult"))
    return result


def _header_operations(rules: Sequence[Rule], bag: Any, response: bool) -> list[HeaderOperation]:
    """The rules' header operations, as Mixer's dispatcher built them: one per value, in order.

    A value that cannot be evaluated or evaluates to ``""`` is skipped (with its operation).
    """
    ops: list[HeaderOperation] = []
    for rule in rules:
        for builder in rule.response_header_operations if response else rule.request_header_operations:
            if builder.operation is HeaderOperationKind.REMOVE:
                ops.append(HeaderOperation(builder.name, "", HeaderOperationKind.REMOVE))
                continue
            for expr in builder.values:
                try:
                    value = expr.evaluate(bag)
                except Exception:
                    continue
                text = value if isinstance(value, str) else str(value)
                if text:
                    ops.append(HeaderOperation(builder.name, text, builder.operation))
    return ops


#: Stands in for an async handler's result until it is gathered.
_PLACEHOLDER = CheckResult()


@dataclass(frozen=True)
class _Cached:
    decision: Decision
    matched: tuple[Rule, ...]


class Dispatcher:
    """Answers checks, quotas and reports for one snapshot."""

    def __init__(self, snapshot: Snapshot, report_sink: Any = None, observer: Any = None) -> None:
        """:param observer: told of handler failures and quota results (``policy.runtime.telemetry.Telemetry``)."""
        self.snapshot = snapshot
        self._observer = observer
        settings = snapshot.cache
        self.cache: DecisionCache | None = (
            DecisionCache(settings.max_entries, settings.max_shapes, types=snapshot.vocabulary,
                          max_bytes=settings.max_bytes)
            if settings.enabled else None
        )
        self._report_sink = report_sink
        #: False when no rule reports anything: a report (or a decision log record) would queue nothing.
        self.reports_anything = report_sink is not None and any(rule.report_actions for rule in snapshot.rules)

    # --- check --------------------------------------------------------------

    def from_cache(self, bag: AttributeBag) -> Decision | None:
        """The cached decision for a request that charges no quota (a fresh id), else None (a miss).

        Synchronous: a transport answers a hit without another coroutine. A miss must be
        decided with :meth:`decide`, which does not look the cache up again.
        """
        cache = self.cache
        if cache is None:
            return None
        cached: _Cached | None = cache.lookup(bag.raw)
        if cached is None:
            return None
        return cached.decision.reused(new_decision_id(), {})

    async def check(
        self,
        bag: AttributeBag,
        quotas: Mapping[str, QuotaArgs] | None = None,
    ) -> Decision:
        """Decide one request: from cache when a cached decision matches, else by dispatch."""
        cache = self.cache
        if cache is not None:
            cached: _Cached | None = cache.lookup(bag.raw)
            if cached is not None:
                decision = cached.decision
                quota_results = (
                    await self._quotas(cached.matched, bag, quotas) if quotas and decision.status.ok else {}
                )
                return decision.reused(new_decision_id(), quota_results)
        return await self.decide(bag, quotas)

    async def decide(
        self,
        bag: AttributeBag,
        quotas: Mapping[str, QuotaArgs] | None = None,
    ) -> Decision:
        """Decide one request by dispatch (no cache lookup), caching the decision when it may be."""
        decision, matched, reads = await self._evaluate(bag)
        cache = self.cache
        if cache is not None:
            references = decision.referenced
            if decision.valid_duration and isinstance(references, LazyReferences):
                references.resolve()  # a decision the cache may keep must not hold the request's attributes
            cache.store(reads, bag.raw, _Cached(decision, matched),
                        decision.valid_duration, decision.valid_use_count)
        if quotas and decision.status.ok:
            decision = decision.with_quotas(await self._quotas(matched, bag, quotas), decision.decision_id)
        return decision

    async def _evaluate(self, bag: AttributeBag) -> tuple[Decision, tuple[Rule, ...], list]:
        snapshot = self.snapshot
        recording = RecordingBag(bag)
        failures: list[tuple[Rule, Exception]] = []
        matched = tuple(r for r in snapshot.rules_for(recording) if r.match is None or r.matches(recording, failures))
        calls: list[HandlerCall] = self._match_failed(failures) if failures else []
        pending: list[tuple[int, Any]] | None = None
        observer = self._observer
        for rule in matched:
            for action in rule.check_actions:
                entry = action.handler
                for builder in action.instances:
                    try:
                        instance = builder.build(recording)
                    except Exception as exc:
                        result = _error_result(entry, Status(
                            Code.INTERNAL, f"instance {builder.name}: {type(exc).__name__}: {exc}"))
                        calls.append(HandlerCall(rule.name, entry.name, builder.name, result))
                        continue
                    if entry.check_is_async:
                        if pending is None:
                            pending = []
                        pending.append((len(calls), _call_async_check(entry, instance, observer)))
                        result = _PLACEHOLDER  # replaced below
                    else:
                        result = _call_check(entry, instance, observer)
                    calls.append(HandlerCall(rule.name, entry.name, builder.name, result))
        if pending:
            results = await asyncio.gather(*(coro for _, coro in pending))
            for (index, _), result in zip(pending, results):
                call = calls[index]
                calls[index] = HandlerCall(call.rule, call.handler, call.instance, result)
        settings = snapshot.cache
        status, duration, uses, deciding = combine(
            [(c.handler, c.result) for c in calls],
            settings.default_valid_duration,
            settings.default_valid_use_count,
        )
        request_headers: list[HeaderOperation] = []
        response_headers: list[HeaderOperation] = []
        if status.ok:  # Mixer applies the rules' header operations only to an allowed request
            for rule in matched:
                if rule.request_header_operations or rule.response_header_operations:
                    request_headers = _header_operations(matched, recording, response=False)
                    response_headers = _header_operations(matched, recording, response=True)
                    break
        # Only what the calls set: a field left out reads its default (Decision.fast).
        optional: dict[str, Any] = {}
        for call in calls:
            result = call.result
            if result.request_headers:
                request_headers.extend(result.request_headers)
            if result.response_headers:
                response_headers.extend(result.response_headers)
            if result.metadata:
                optional.setdefault("metadata", {}).update(result.metadata)
            if result.query_parameters_to_set:
                optional["query_parameters_to_set"] = (*optional.get("query_parameters_to_set", ()),
                                                       *result.query_parameters_to_set)
            if result.query_parameters_to_remove:
                optional["query_parameters_to_remove"] = (*optional.get("query_parameters_to_remove", ()),
                                                          *result.query_parameters_to_remove)
        if request_headers:
            optional["request_headers"] = tuple(request_headers)
        if response_headers:
            optional["response_headers"] = tuple(response_headers)
        if deciding is not None:
            optional["http_status"] = deciding.http_status
            optional["body"] = deciding.body
        decision = Decision.fast(
            status=status,
            valid_duration=duration,
            valid_use_count=uses,
            referenced=LazyReferences(bag.raw, recording.reads),
            rules=tuple(r.name for r in matched),
            calls=tuple(calls),
            decision_id=new_decision_id(),
            generation=snapshot.generation,
            **optional,
        )
        return decision, matched, recording.reads

    def _count_match_failures(self, failures: Sequence[tuple[Rule, Exception]]) -> None:
        count = getattr(self._observer, "rule_match_failed", None)
        if count is not None:
            for rule, _ in failures:
                count(rule.name)

    def _match_failed(self, failures: Sequence[tuple[Rule, Exception]]) -> list[HandlerCall]:
        """Count failed matches; under ``matchErrors: DENY``, one INTERNAL denial per failed rule."""
        self._count_match_failures(failures)
        if self.snapshot.match_errors is not MatchErrors.DENY:
            return []
        return [HandlerCall(rule.name, f"rule {rule.name}", "", CheckResult(Status(
                    Code.INTERNAL, f"match expression failed: {type(exc).__name__}: {exc}")))
                for rule, exc in failures]


    async def _quotas(
        self, matched: Sequence[Rule], bag: AttributeBag, quotas: Mapping[str, QuotaArgs]
    ) -> dict[str, QuotaResult]:
        results: dict[str, QuotaResult] = {}
        for name, args in quotas.items():
            results[name] = await self._quota(matched, bag, name, args)
        return results

    async def _quota(
        self, matched: Sequence[Rule], bag: AttributeBag, name: str, args: QuotaArgs
    ) -> QuotaResult:
        results: list[QuotaResult] = []
        for rule in matched:
            for action in rule.quota_actions:
                for builder in action.instances:
                    if builder.name == name or builder.name.split(".", 1)[0] == name:
                        results.append(await self._call_quota(action, builder, bag, args))
        if not results:
            # No rule charges this quota: nothing limits it.
            return QuotaResult(granted_amount=args.amount, valid_duration=self.snapshot.cache.default_valid_duration)
        failures = [r for r in results if not r.ok]
        if len(failures) == 1:
            return failures[0]
        if failures:  # Mixer: the first failure's code, every failure's message joined
            first = failures[0]
            message = ", ".join(r.status.message for r in failures)
            return QuotaResult(first.granted_amount, first.valid_duration, Status(first.status.code, message),
                               first.remaining, first.limit)
        return min(results, key=lambda r: r.granted_amount)

    async def _call_quota(self, action: Action, builder: Any, bag: AttributeBag, args: QuotaArgs) -> QuotaResult:
        entry = action.handler
        try:
            instance = builder.build(bag)
            if entry.quota_is_async:
                result = await asyncio.wait_for(entry.handler.quota(instance, args), entry.timeout)
            else:
                result = entry.handler.quota(instance, args)
        except Exception as exc:
            status = _failure(entry, exc, "quota", self._observer)
            if entry.fail_mode is FailMode.OPEN:
                return QuotaResult(granted_amount=args.amount, valid_duration=0.0)
            return QuotaResult(0, 0.0, Status(status.code, f"{entry.name}: {status.message}"))
        if self._observer is not None:
            self._observer.quota_result(entry.name, result)
        if not result.ok and result.status.message and not result.status.message.startswith(entry.name):
            result = QuotaResult(result.granted_amount, result.valid_duration,
                                 Status(result.status.code, f"{entry.name}: {result.status.message}"),
                                 result.remaining, result.limit)
        return result

    # --- report -------------------------------------------------------------

    #: Report instances that more than one report action sends (built once per bag, shared); None until needed.
    _shared_report_builders: frozenset[Any] | None = None

    def report(self, bags: Sequence[AttributeBag]) -> int:
        """Build report instances for each bag and hand them to the report sink.

        Never blocks and never raises for a bad instance: returns how many
        instances were queued. An instance that several actions send (one metric to
        prometheus and statsd) is built once per bag and the same (immutable) instance
        goes to each of their handlers.
        """
        sink = self._report_sink
        if sink is None:
            return 0
        shared = self._shared_report_builders
        if shared is None:
            shared = self._shared_report_builders = _shared_builders(self.snapshot.rules)
        put = sink.put
        queued = 0
        failures: list[tuple[Rule, Exception]] = []
        rules_for = self.snapshot.report_rules_for
        for bag in bags:
            built: dict[Any, Any] = {}
            for rule in rules_for(bag):
                if rule.match is not None and not rule.matches(bag, failures):
                    continue
                for action in rule.report_actions:
                    for builder in action.instances:
                        if builder in shared and builder in built:
                            instance = built[builder]
                            if instance is _FAILED:
                                continue
                        else:
                            try:
                                instance = builder.build(bag)
                            except Exception as exc:
                                log.warning("rule %s: instance %s failed: %s", rule.name, builder.name, clip(exc))
                                if builder in shared:
                                    built[builder] = _FAILED
                                continue
                            if builder in shared:
                                built[builder] = instance
                        queued += put(action.handler, instance)
        if failures:
            self._count_match_failures(failures)
        return queued

    def report_soon(self, make_bag: Callable[..., AttributeBag], *args: Any) -> None:
        """Report ``make_bag(*args)`` later, with other deferred reports (``ReportQueue.defer``)."""
        sink = self._report_sink
        if sink is None:
            return
        defer = getattr(sink, "defer", None)
        if defer is None:  # a plain sink: report now
            self.report((make_bag(*args),))
        else:
            defer(self._report_made, (make_bag, args))

    def _report_made(self, items: list[tuple[Callable[..., AttributeBag], tuple[Any, ...]]]) -> None:
        bags = []
        for make_bag, args in items:
            try:
                bags.append(make_bag(*args))
            except Exception:  # one broken record must not lose the others
                log.exception("a deferred report could not be built")
        self.report(bags)


#: Marks a shared instance whose build failed for this bag (logged once, skipped for every action).
_FAILED = object()


def _shared_builders(rules: Sequence[Rule]) -> frozenset[Any]:
    """The instance builders that more than one report action (of any rules) sends."""
    seen: set[Any] = set()
    shared: set[Any] = set()
    for rule in rules:
        for action in rule.report_actions:
            for builder in action.instances:
                (shared if builder in seen else seen).add(builder)
    return frozenset(shared)
