"""The Envoy rate-limit service (``envoy.service.ratelimit.v3``) behind a quota handler.

Config (see the README): RLS documents in envoyproxy/ratelimit's format (a top-level
``domain`` key), anywhere in the config, and ``settings.rateLimit`` naming the
memquota or redisquota handler that counts. :mod:`policy.config.ratelimit.limits` reads
the documents (:mod:`policy.config.ratelimit.loading` hooks them into config loading),
:mod:`policy.runtime.ratelimit` decides a request (``PolicyService.rate_limit``) and
:mod:`policy.servers.ratelimit` translates ``ShouldRateLimit`` to and from it.

A handler backs the service by implementing
``rate_limit_count(counters, stop_when_over=False) -> [(count_after, reset_seconds)]``
(plain or ``async``), where each counter is ``(id, hits, limit, window_seconds)``:
clock-aligned fixed windows, each charged its hits also past its limit (with
``stop_when_over``: when one would go over its limit, only those that would go
over are charged), and ``hits == 0`` only reads. It raises
:class:`~policy.AdapterError` (UNAVAILABLE) when its backend cannot answer.
"""

from __future__ import annotations

from policy.config.ratelimit.limits import (
    RateLimit,
    RateLimitConfig,
    RateLimitSettings,
    compile_rate_limit,
    is_ratelimit_document,
)

__all__ = ["RateLimit", "RateLimitConfig", "RateLimitSettings", "compile_rate_limit", "is_ratelimit_document"]
