"""Deciding a rate-limit request: limits looked up, counters charged through the backing handler.

Transport-neutral: :func:`decide` takes a domain and ``RateLimitDescriptor`` tuples
and answers a :class:`RateLimitDecision`; :mod:`policy.servers.ratelimit` translates
Envoy's ``ShouldRateLimit`` to and from them.

Semantics (envoyproxy/ratelimit's, see ``src/service/ratelimit.go``,
``src/limiter/base_limiter.go`` and ``src/redis/fixed_cache_impl.go``):

- hits: the descriptor's ``hits_addend`` when set (0 only reads the counter),
  else the request's, else 1.
- a descriptor's own ``limit`` replaces the configured one, within a configured
  domain only (never in shadow or quota mode); ``unlimited`` answers OK with
  ``limit_remaining`` 2^32-1; a limit named in another matched limit's
  ``replaces`` is dropped.
- every matched counter is charged on every request, also past its limit, so a
  client that keeps calling stays limited (``stopIncrementWhenOverLimit`` is the
  reference's opt-in that charges, when a request goes over a limit, only the
  counters that go over). A descriptor is over its limit when its count after
  the hits exceeds ``requests_per_unit``: ``OVER_LIMIT`` with ``limit_remaining``
  0, else ``OK`` with what is left; ``duration_until_reset`` is whole seconds to
  the end of the clock-aligned window.
- the overall code is ``OVER_LIMIT`` when a descriptor that is not in quota mode
  is over its limit, or every quota-mode descriptor is; a shadow-mode limit
  answers OK (counted as ``shadow_mode``); global shadow mode answers OK overall.
- response headers describe the descriptor with the least remaining (an over-limit
  non-quota descriptor first); dynamic metadata, when enabled, names the domain,
  descriptors, hits and the merged ``metadata`` of the descriptors within their limit.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from policy.config.ratelimit.limits import UNIT_SECONDS, RateLimit, RateLimitConfig
from policy.config.ratelimit.stats import NEAR_LIMIT, OVER_LIMIT as OVER, SHADOW_MODE, TOTAL_HITS, WITHIN_LIMIT
from policy.sdk import AdapterError, Code

UNLIMITED_REMAINING = 2 ** 32 - 1


class RequestError(ValueError):
    """A request that cannot be answered as asked (answered INVALID_ARGUMENT)."""


#: One request descriptor: ``(entries, limit, hits_addend)``. ``entries`` are ``(key, value)``
#: pairs; ``limit`` the descriptor's own ``(requests_per_unit, unit name)`` (``SECOND`` ...
#: ``YEAR``; anything else is a :class:`RequestError`) or None; ``hits_addend`` None means the
#: request's hits apply. A plain tuple: one is made per descriptor of every request.
RateLimitDescriptor = tuple[Sequence[tuple[str, str]], tuple[int, str] | None, int | None]

#: The answer for one descriptor: ``(over_limit, limit, remaining, reset_seconds)``. ``limit``
#: is the limit that applied (None when none did, or it is unlimited); ``reset_seconds`` is
#: None when no counter was charged. A plain tuple, as above.
DescriptorStatus = tuple[bool, RateLimit | None, int, int | None]


class RateLimitDecision(NamedTuple):
    """The answer to one rate-limit request.

    ``headers`` are the response headers to add; ``metadata`` is None unless the config asks
    for dynamic metadata, then the merged ``metadata`` of the descriptors within their limit.
    """

    over_limit: bool
    statuses: list[DescriptorStatus]
    headers: list[tuple[str, str]]
    metadata: dict[str, Any] | None


def _limits(config: RateLimitConfig, domain: str,
            descriptors: Sequence[RateLimitDescriptor]) -> list[RateLimit | None]:
    limits: list[RateLimit | None] = []
    known = domain in config.domains
    for index, (entries, own, _) in enumerate(descriptors):
        if not known:
            limits.append(None)
        elif own is not None:
            requests_per_unit, unit = own
            if unit not in UNIT_SECONDS:
                raise RequestError(f"descriptors[{index}].limit.unit: not a rate limit unit ({unit})")
            key = f"{domain}." + ".".join(f"{k}_{v}" if v else k for k, v in entries)
            limits.append(RateLimit(requests_per_unit, unit, key, stats_key=key))
        else:
            limits.append(config.lookup(domain, entries))
    replaced = {name for limit in limits if limit is not None for name in limit.replaces}
    if replaced:
        # An unlimited limit stays unlimited (the reference sets it aside before replacing).
        limits = [None if limit is not None and not limit.unlimited and limit.name and limit.name in replaced
                  else limit for limit in limits]
    return limits


_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in "%|=,{}\n\r\t :"})


def _counter_id(domain: str, entries: Sequence[tuple[str, str]], limit: RateLimit) -> str:
    """A counter id from request values: escaped (no hash-tag braces survive), hashed when long.

    share_threshold entries are counted by their wildcard instead of the request's value.
    """
    if limit.share_patterns:
        entries = [(k, limit.share_patterns[i] or v) for i, (k, v) in enumerate(entries)]
    parts = [domain.translate(_ESCAPES)]
    parts += [f"{k.translate(_ESCAPES)}={v.translate(_ESCAPES)}" for k, v in entries]
    parts.append(limit.unit)
    text = "|".join(parts)
    if len(text) > 200:
        return f"{parts[0][:64]}|#{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"
    return text


async def _count(handler: Any, counters: list[tuple[str, int, int, float]], stop: bool) -> list[Any]:
    if not counters:
        return []
    answers = handler.rate_limit_count(counters, stop)
    if inspect.isawaitable(answers):
        answers = await answers
    return list(answers)


def _reset_seconds(limit: RateLimit, reset: float) -> int:
    """Whole seconds to the window's end (the reference's ``unit - now % unit``, so at least 1)."""
    if reset <= 0:
        return limit.window
    return max(1, min(limit.window, math.ceil(reset - 1e-9)))


def _record(config: RateLimitConfig, limit: RateLimit, domain: str, before: int, after: int, hits: int,
            over: bool) -> None:
    """The reference's per-key statistics for one descriptor (hits split between near and over limit)."""
    assert config.statistics is not None
    fallback = limit.full_key if limit.full_key else f"{domain}.request_limit"
    if limit.full_key not in config.configured_keys and limit.stats_key == limit.full_key:
        fallback = f"{domain}.request_limit"
    row = config.statistics.row(limit.stats_key or limit.full_key, fallback)
    threshold = limit.requests_per_unit
    near = math.floor(threshold * config.settings.near_limit_ratio)
    row[TOTAL_HITS] += hits
    if over:
        if before >= threshold:
            row[OVER] += hits
        else:
            row[OVER] += after - threshold
            row[NEAR_LIMIT] += threshold - max(near, before)
        if limit.shadow_mode:
            row[SHADOW_MODE] += hits if before >= threshold else after - threshold
    else:
        if after > near:
            row[NEAR_LIMIT] += hits if before >= near else after - near
        row[WITHIN_LIMIT] += hits


def _merge(dest: dict[str, Any], src: Mapping[str, Any]) -> None:
    """The reference's mergeMetadata: nested mappings merge, the first value of a key wins otherwise."""
    for key, value in src.items():
        key = str(key)
        if key in dest:
            if isinstance(dest[key], dict) and isinstance(value, Mapping):
                _merge(dest[key], value)
        else:
            dest[key] = dict(value) if isinstance(value, Mapping) else value


def _merged_metadata(passed: list[int], limits: list[RateLimit | None]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for i in passed:
        limit = limits[i]
        if limit is not None and limit.metadata:
            _merge(merged, limit.metadata)
    return merged


async def decide(config: RateLimitConfig, handler: Any, domain: str,
                 descriptors: Sequence[RateLimitDescriptor], hits_addend: int = 0) -> RateLimitDecision:
    """Decide one rate-limit request; raises RequestError (bad request) or AdapterError (backend down)."""
    if not domain:
        raise RequestError("rate limit domain must not be empty")
    if not descriptors:
        raise RequestError("rate limit descriptor list must not be empty")
    settings = config.settings
    limits = _limits(config, domain, descriptors)
    default_hits = max(1, hits_addend)
    indexes: list[int] = []
    counters: list[tuple[str, int, int, float]] = []
    for i, ((entries, _, own_hits), limit) in enumerate(zip(descriptors, limits)):
        if limit is None or limit.unlimited:
            continue
        hits = own_hits if own_hits is not None else default_hits
        indexes.append(i)
        counters.append((_counter_id(domain, entries, limit), hits, limit.requests_per_unit, float(limit.window)))
    answers = dict(zip(indexes, await _count(handler, counters, settings.stop_increment_when_over_limit)))
    statuses: list[DescriptorStatus] = []
    closest: tuple[int, DescriptorStatus] | None = None
    failed = failed_quota = quota_total = 0
    passed: list[int] = []
    hits_of = dict(zip(indexes, (c[1] for c in counters)))
    for i, limit in enumerate(limits):
        if limit is None:
            statuses.append((False, None, 0, None))
            passed.append(i)
            continue
        if limit.unlimited:
            statuses.append((False, None, UNLIMITED_REMAINING, None))
            continue
        after, reset = answers[i]
        hits = hits_of[i]
        before = after - hits
        over = after > limit.requests_per_unit
        _record(config, limit, domain, before if before >= 0 else limit.requests_per_unit, after, hits, over)
        denied = over and not limit.shadow_mode
        remaining = 0 if over else min(limit.requests_per_unit - after, UNLIMITED_REMAINING)
        status = (denied, limit, remaining, _reset_seconds(limit, reset))
        statuses.append(status)
        quota = settings.quota_mode or limit.quota_mode
        quota_total += quota
        if closest is None or remaining < closest[0]:
            closest = (remaining, status)
        if denied:
            if quota:
                failed_quota += 1
            else:
                failed += 1
                closest = (-1, status)
        else:
            passed.append(i)
    over_limit = bool(failed or (quota_total and quota_total == failed_quota))
    headers: list[tuple[str, str]] = []
    if settings.response_headers and closest is not None:
        _, closest_limit, closest_remaining, closest_reset = closest[1]
        assert closest_limit is not None
        headers = [(settings.limit_header, str(closest_limit.requests_per_unit)),
                   (settings.remaining_header, str(closest_remaining)),
                   (settings.reset_header, str(closest_reset))]
    if over_limit and settings.shadow_mode:
        over_limit = False
        config.count("global_shadow_mode")
    metadata = _merged_metadata(passed, limits) if settings.response_dynamic_metadata else None
    return RateLimitDecision(over_limit, statuses, headers, metadata)


__all__ = [
    "AdapterError", "Code", "DescriptorStatus", "RateLimitDecision", "RateLimitDescriptor", "RequestError",
    "UNLIMITED_REMAINING", "decide",
]
