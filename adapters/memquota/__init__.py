"""The ``memquota`` adapter: quotas counted in this process's memory.

What it does
    Answers ``quota`` calls (template ``quota``) from counters kept in memory, one
    per quota and distinct dimension values, as Mixer's memquota did. It can also
    back the Envoy rate-limit service (``settings.rateLimit.handler``).

Params (Mixer's, plus a few of ours)
    ``quotas[]``                 ``name``, ``maxAmount``, ``validDuration`` (0 = allocation mode:
                                 no window), ``overrides[]`` (``dimensions`` + ``maxAmount`` +
                                 their own ``validDuration``, none = no window, as in Mixer;
                                 first match wins; no dimensions matches every call),
                                 ``rateLimitAlgorithm`` (ROLLING_WINDOW, the default, or
                                 FIXED_WINDOW / ALIGNED_FIXED_WINDOW, both aligned to the
                                 clock: ours) and ``bucketDuration`` (rolling granularity,
                                 any duration from 1ms that divides the window, ours; without
                                 it, Mixer's: 100 ms ticks over the window rounded up to whole
                                 seconds, a grant still valid for ``validDuration``).
    ``minDeduplicationDuration`` how long a deduplication id is remembered at least
                                 (default 1s; kept at most twice that).
    ``maxCounters``              the most counters kept at once (default 100000).

Semantics
    ``best_effort`` grants what is left; a call that does not fit is not charged
    (``RESOURCE_EXHAUSTED``, valid duration 0, as Mixer); a negative amount releases
    (in a window, the newest grants first); a retried call with the same
    deduplication id (a grant, a denial or a release) answers the first call's
    answer without charging again. A quota instance routed here without a limit
    in ``quotas`` is a config error. Rate-limit service counters are
    clock-aligned fixed windows.

Fail mode
    No I/O, so nothing to fail over; when ``maxCounters`` is reached a call that
    needs a new counter answers ``UNAVAILABLE`` (never ``RESOURCE_EXHAUSTED``).

Cacheability
    Quota results are never cached by the host; check results are not produced.

Limits
    Counters live in one process: several sidecar processes each count their own
    (use ``redisquota`` to share). A restart forgets every counter. A rolling window
    keeps one entry per bucket that saw a charge (Mixer kept one slot per 100 ms tick
    of the window for every counter): memory grows with the traffic of a window. Thread- and
    task-safe; calls take a lock for microseconds and never block on I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters._quota.core import LimiterUnavailable
from adapters._quota.handler import QuotaCalls
from adapters._quota.memory import MemoryLimiter
from adapters._quota.params import (
    Algorithm,
    QuotaParams,
    QuotaTable,
    mixer_ticks,
    quota_limit_errors,
    validate_quotas,
)
from policy import (
    Adapter,
    AdapterError,
    BuildContext,
    Code,
    FieldError,
    Handler,
    QuotaArgs,
    QuotaResult,
    RateLimitAnswer,
    RateLimitCounter,
    Status,
    hookimpl,
    param,
)


@dataclass(frozen=True)
class MemQuotaParams:
    """Params of the ``memquota`` adapter."""

    quotas: list[QuotaParams] = param(default_factory=list, doc="The quotas this handler counts.")
    min_deduplication_duration: dt.timedelta = param(
        dt.timedelta(seconds=1), doc="How long a deduplication id is remembered at least.")
    max_counters: int = param(100_000, doc="The most counters kept at once.")


class MemQuotaHandler(Handler):
    """Counts quotas in memory."""

    def __init__(self, params: MemQuotaParams, context: BuildContext) -> None:
        self.calls = QuotaCalls(context.handler, QuotaTable(params.quotas, Algorithm.ROLLING_WINDOW, mixer_ticks,
                                                              override_window_required=True, aligned_fixed=True,
                                                              whole_seconds=True))
        clock = context.clock
        self.limiter = MemoryLimiter(clock.now, clock.monotonic,
                                     params.min_deduplication_duration.total_seconds(), params.max_counters)
        self.stats = {"calls": 0, "granted": 0, "exhausted": 0, "deduplicated": 0, "unavailable": 0}

    def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        """Charge the instance's counter ``args.amount`` (see the module docstring)."""
        stats = self.stats
        stats["calls"] += 1
        hit = self.calls.cached(instance, args)
        if hit is not None and args.amount > 0 and not args.deduplication_id:
            cid, limit = hit
            if limit.algorithm is Algorithm.ALIGNED_FIXED_WINDOW and limit.window > 0:  # the hot path, inline
                try:
                    granted, remaining, reset = self.limiter.fixed(cid, args.amount, limit.max_amount,
                                                                   limit.window, args.best_effort)
                except LimiterUnavailable as exc:
                    stats["unavailable"] += 1
                    return QuotaResult(0, 0.0, Status(Code.UNAVAILABLE, str(exc)))
                if granted:
                    stats["granted"] += 1
                    return QuotaResult(granted, reset, remaining=remaining, limit=limit.max_amount)
        counter = self.calls.counter(instance, args)
        if isinstance(counter, QuotaResult):
            return counter
        if args.amount == 0:
            return QuotaResult(0, 0.0)
        try:
            allocation = self.limiter.allocate_one(counter, args.best_effort, args.deduplication_id)
        except LimiterUnavailable as exc:
            stats["unavailable"] += 1
            return QuotaResult(0, 0.0, Status(Code.UNAVAILABLE, str(exc)))
        if allocation.deduplicated:
            stats["deduplicated"] += 1
        stats["granted" if allocation.granted > 0 or args.amount < 0 else "exhausted"] += 1
        return self.calls.result(counter, allocation)

    def rate_limit_count(self, counters: Sequence[RateLimitCounter],
                         stop_when_over: bool = False) -> list[RateLimitAnswer]:
        """Count rate-limit service counters as envoyproxy/ratelimit does: (count after, seconds to reset) each.

        Clock-aligned fixed windows, charged also past the limit (unless
        ``stop_when_over``, see :meth:`MemoryLimiter.count`). Raises
        AdapterError(UNAVAILABLE) when the counters cannot be kept.
        """
        try:
            return self.limiter.count(self.calls.rate_limit_counters(counters), stop_when_over)
        except LimiterUnavailable as exc:
            raise AdapterError(Code.UNAVAILABLE, str(exc)) from None

    def close(self) -> None:
        """Forget every counter."""
        self.limiter = MemoryLimiter(self.limiter._now, self.limiter._monotonic)


class MemQuotaAdapter(Adapter[MemQuotaParams]):
    """Quotas counted in this process's memory (Mixer's memquota)."""

    #: Unchanged handlers are kept across config reloads, so their counters are too.
    keep_across_reloads = True
    name = "memquota"
    description = "Volatile memory-based quotas: fixed or rolling windows, allocation mode, deduplication."
    templates = ("quota",)
    Params = MemQuotaParams

    @classmethod
    def validate(cls, params: MemQuotaParams) -> Iterator[FieldError]:
        """Check quota definitions and the deduplication duration."""
        yield from validate_quotas(params.quotas, Algorithm.ROLLING_WINDOW)
        if params.min_deduplication_duration.total_seconds() <= 0:
            yield FieldError("minDeduplicationDuration", "must be > 0")
        if params.max_counters <= 0:
            yield FieldError("maxCounters", f"must be positive, got {params.max_counters}")

    @classmethod
    def validate_instances(cls, params: Any, instances: Mapping[str, str]) -> Iterator[FieldError]:
        """Every quota instance routed here needs a limit in ``quotas`` (Mixer refused the handler)."""
        yield from quota_limit_errors(params.quotas, instances)

    @classmethod
    def build(cls, params: MemQuotaParams, context: BuildContext) -> Handler:
        """Build a handler with empty counters."""
        return MemQuotaHandler(params, context)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the memquota adapter."""
    registry.add(MemQuotaAdapter)
