"""Turning quota calls into counter charges, shared by the memquota and redisquota handlers.

:class:`QuotaCalls` maps a quota instance and :class:`~policy.QuotaArgs` to a
:class:`Counter` and an :class:`Allocation` back to a :class:`~policy.QuotaResult`,
and adapts the rate-limit service's counter tuples (see :meth:`rate_limit_counters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters._quota.core import Allocation, Counter
from adapters._quota.keys import counter_id
from adapters._quota.params import Algorithm, QuotaTable
from policy import Code, QuotaArgs, QuotaResult, RateLimitCounter, Status


class QuotaCalls:
    """The quota side of a handler: limits by quota name, counters by dimensions."""

    def __init__(self, handler_name: str, table: QuotaTable) -> None:
        self.handler_name = handler_name
        self.table = table
        # (name, dimension items) -> (counter id, limit): resolving overrides and escaping ids is the
        # costly part of a call, and the same counters are asked for again and again.
        self._resolved: dict[tuple[Any, ...], tuple[str, Any]] = {}

    def cached(self, instance: Any, args: QuotaArgs) -> tuple[str, Any] | None:
        """(counter id, limit) of a call seen before with string dimensions, else None (the hot path)."""
        dimensions = instance.dimensions
        for value in dimensions.values():
            if type(value) is not str:
                return None
        return self._resolved.get((instance.name or args.quota, args.quota, *dimensions.items()))

    def counter(self, instance: Any, args: QuotaArgs) -> Counter | QuotaResult:
        """The counter a call charges, or the result to answer right away (unknown quota, bad amount)."""
        name = getattr(instance, "name", "") or args.quota
        dimensions = getattr(instance, "dimensions", None) or {}
        key: tuple[Any, ...] | None = (name, args.quota, *dimensions.items())
        for value in dimensions.values():
            if type(value) is not str:  # 1, True and "1" must not share an entry
                key = None
                break
        if key is not None:
            hit = self._resolved.get(key)
            if hit is not None:
                limit = hit[1]
                return Counter(hit[0], args.amount, limit.max_amount, limit.window, limit.bucket, limit.algorithm,
                               limit.valid)
        limit = self.table.limit(name, dimensions)
        if limit is None and args.quota and args.quota != name:
            name = args.quota
            limit = self.table.limit(name, dimensions)
        if limit is None:
            return QuotaResult(0, 0.0, Status(Code.FAILED_PRECONDITION, f"no quota named {name!r} is configured"))
        suffix = f"o{limit.override}" if limit.override >= 0 else ""
        cid = counter_id(name, dimensions, suffix)
        if key is not None:
            if len(self._resolved) >= 10_000:
                self._resolved.clear()
            self._resolved[key] = (cid, limit)
        return Counter(cid, args.amount, limit.max_amount, limit.window, limit.bucket, limit.algorithm, limit.valid)

    @staticmethod
    def result(counter: Counter, allocation: Allocation) -> QuotaResult:
        """The QuotaResult for what a counter answered."""
        if counter.amount <= 0 or allocation.granted > 0:
            if counter.window == 0 or counter.amount < 0:
                valid = 0.0  # Mixer: no valid duration for allocation mode and for releases
            elif allocation.deduplicated:
                valid = allocation.reset  # a replay: what is left of the first grant's validity
            elif counter.algorithm is Algorithm.ROLLING_WINDOW:
                valid = counter.valid if counter.valid >= 0 else counter.window  # a grant's whole window
            else:
                valid = allocation.reset
            return QuotaResult(allocation.granted, valid, remaining=allocation.remaining, limit=counter.max_amount)
        # Mixer answers a denied quota with a valid duration of 0 (nothing was granted to keep).
        return QuotaResult(
            0, 0.0,
            Status(Code.RESOURCE_EXHAUSTED,
                   f"quota exhausted: {counter.max_amount - allocation.remaining} of {counter.max_amount} in use"),
            remaining=allocation.remaining, limit=counter.max_amount)

    @staticmethod
    def rate_limit_counters(counters: Sequence[RateLimitCounter]) -> list[Counter]:
        """Counters (clock-aligned fixed windows) for the rate-limit service's tuples."""
        return [Counter(f"rls|{cid}", hits, limit, window, window, Algorithm.ALIGNED_FIXED_WINDOW)
                for cid, hits, limit, window in counters]
