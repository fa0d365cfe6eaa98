"""The rate-limit service's statistics, per limit key as envoyproxy/ratelimit keeps them, bounded.

Per key (a limit's full key such as ``shop.path_/api``, or the ``detailed_metric``
/ ``value_to_metric`` key of a request): ``total_hits``, ``over_limit``,
``near_limit``, ``within_limit``, ``shadow_mode`` — counted in hits, with the
reference's split of one request's hits between near and over limit
(``src/limiter/base_limiter.go``). Service-wide: ``invalid_requests``,
``backend_errors``, ``service_errors``, ``global_shadow_mode``.

Bounded: configured limits always have their own series; keys made from request
values (detailed_metric, value_to_metric, a descriptor's own ``limit``) get their
own series for the first :data:`MAX_DYNAMIC_KEYS` of them, later ones are counted
under their configured limit's key (or ``<domain>.request_limit``). A reload
continues the previous generation's counters (:meth:`RateLimitStats.carry_from`).
"""

from __future__ import annotations

from collections.abc import Iterable

STATS = ("total_hits", "over_limit", "near_limit", "within_limit", "shadow_mode")
MAX_DYNAMIC_KEYS = 1000


class RateLimitStats:
    """Counters by limit key and statistic, plus service-wide counters."""

    def __init__(self, configured: Iterable[str] = ()) -> None:
        self.configured = configured
        self.by_key: dict[str, list[int]] = {}
        self.service_counts: dict[str, int] = {}
        self._dynamic = 0

    def row(self, key: str, fallback: str) -> list[int]:
        """The counters of ``key`` (created within the bound; else ``fallback``'s)."""
        row = self.by_key.get(key)
        if row is not None:
            return row
        if key not in self.configured:
            if self._dynamic >= MAX_DYNAMIC_KEYS:
                key = fallback
                row = self.by_key.get(key)
                if row is not None:
                    return row
            else:
                self._dynamic += 1
        row = self.by_key[key] = [0] * len(STATS)
        return row

    def carry_from(self, previous: "RateLimitStats") -> None:
        """Continue the counters of the previous config generation (shared: late answers on it still count)."""
        self.by_key = previous.by_key
        self.service_counts = previous.service_counts
        self._dynamic = sum(1 for key in self.by_key if key not in self.configured)

    def service(self, name: str, amount: int = 1) -> None:
        """Add to a service-wide counter."""
        self.service_counts[name] = self.service_counts.get(name, 0) + amount

    def flat(self) -> dict[str, int]:
        """Every counter by name: ``<key>.<stat>``, the totals ``<stat>``, and the service-wide ones."""
        out: dict[str, int] = dict(self.service_counts)
        for key, row in list(self.by_key.items()):
            for name, value in zip(STATS, row):
                if value:
                    out[f"{key}.{name}"] = value
                    out[name] = out.get(name, 0) + value
        return out


TOTAL_HITS, OVER_LIMIT, NEAR_LIMIT, WITHIN_LIMIT, SHADOW_MODE = range(len(STATS))

__all__ = ["MAX_DYNAMIC_KEYS", "STATS", "RateLimitStats"]
