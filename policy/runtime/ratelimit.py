"""Answering ``ShouldRateLimit``: limits looked up, counters charged through the backing handler.

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
from collections.abc import Mapping
from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2

from policy.config.ratelimit.limits import UNIT_SECONDS, RateLimit, RateLimitConfig
from policy.config.ratelimit.stats import NEAR_LIMIT, OVER_LIMIT as OVER, SHADOW_MODE, TOTAL_HITS, WITHIN_LIMIT
from policy.sdk import AdapterError, Code

OK = rls_pb2.RateLimitResponse.OK
OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT
_UNIT_NAMES = {v: k for k, v in rls_pb2.RateLimitResponse.RateLimit.Unit.items()}
UNLIMITED_REMAINING = 2 ** 32 - 1


class RequestError(ValueError):
    """A request that cannot be answered as asked (answered INVALID_ARGUMENT)."""


def _entries(descriptor: Any) -> list[tuple[str, str]]:
    return [(e.key, e.value) for e in descriptor.entries]


def _limits(config: RateLimitConfig, request: Any) -> list[RateLimit | None]:
    limits: list[RateLimit | None] = []
    known = request.domain in config.domains
    for index, descriptor in enumerate(request.descriptors):
        entries = _entries(descriptor)
        if not known:
            limits.append(None)
        elif descriptor.HasField("limit"):
            unit = _UNIT_NAMES.get(descriptor.limit.unit, "UNKNOWN")
            if unit not in UNIT_SECONDS:
                raise RequestError(f"descriptors[{index}].limit.unit: not a rate limit unit ({unit})")
            key = f"{request.domain}." + ".".join(f"{k}_{v}" if v else k for k, v in entries)
            limits.append(RateLimit(descriptor.limit.requests_per_unit, unit, key, stats_key=key))
        else:
            limits.append(config.lookup(request.domain, entries))
    replaced = {name for limit in limits if limit is not None for name in limit.replaces}
    if replaced:
        # An unlimited limit stays unlimited (the reference sets it aside before replacing).
        limits = [None if limit is not None and not limit.unlimited and limit.name and limit.name in replaced
                  else limit for limit in limits]
    return limits


_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in "%|=,{}\n\r\t :"})


def _counter_id(domain: str, entries: list[tuple[str, str]], limit: RateLimit) -> str:
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


_UNIT_VALUES = dict(rls_pb2.RateLimitResponse.RateLimit.Unit.items())
#: current_limit messages by (name, requests_per_unit, unit): built once (bounded: cleared when full).
_CURRENT_LIMITS: dict[tuple[str, int, str], Any] = {}


def _current_limit(limit: RateLimit) -> Any:
    key = (limit.name, limit.requests_per_unit, limit.unit)
    message = _CURRENT_LIMITS.get(key)
    if message is None:
        if len(_CURRENT_LIMITS) >= 10_000:
            _CURRENT_LIMITS.clear()
        message = _CURRENT_LIMITS[key] = rls_pb2.RateLimitResponse.RateLimit(
            name=limit.name, requests_per_unit=limit.requests_per_unit, unit=_UNIT_VALUES[limit.unit])
    return message


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


def _dynamic_metadata(request: Any, passed: list[int], limits: list[RateLimit | None], response: Any) -> None:
    descriptors = []
    for descriptor in request.descriptors:
        item: dict[str, Any] = {"entries": [f"{e.key}={e.value}" for e in descriptor.entries]}
        if descriptor.HasField("limit"):
            item["limit"] = str(descriptor.limit).replace("\n", " ").strip()
        if descriptor.HasField("hits_addend"):
            item["hitsAddend"] = float(descriptor.hits_addend.value)
        descriptors.append(item)
    fields: dict[str, Any] = {"domain": request.domain, "descriptors": descriptors}
    if request.hits_addend:
        fields["hitsAddend"] = float(request.hits_addend)
    merged: dict[str, Any] = {}
    for i in passed:
        limit = limits[i]
        if limit is not None and limit.metadata:
            _merge(merged, limit.metadata)
    if merged:
        fields["metadata"] = merged
    response.dynamic_metadata.update(fields)


async def should_rate_limit(config: RateLimitConfig, handler: Any, request: Any) -> Any:
    """Answer one RateLimitRequest; raises RequestError (bad request) or AdapterError (backend down)."""
    if not request.domain:
        raise RequestError("rate limit domain must not be empty")
    if not request.descriptors:
        raise RequestError("rate limit descriptor list must not be empty")
    settings = config.settings
    limits = _limits(config, request)
    default_hits = max(1, request.hits_addend)
    indexes: list[int] = []
    counters: list[tuple[str, int, int, float]] = []
    for i, (descriptor, limit) in enumerate(zip(request.descriptors, limits)):
        if limit is None or limit.unlimited:
            continue
        hits = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else default_hits
        indexes.append(i)
        counters.append((_counter_id(request.domain, _entries(descriptor), limit), hits, limit.requests_per_unit,
                         float(limit.window)))
    answers = dict(zip(indexes, await _count(handler, counters, settings.stop_increment_when_over_limit)))
    response = rls_pb2.RateLimitResponse(overall_code=OK)
    closest: tuple[int, Any, RateLimit] | None = None
    failed = failed_quota = quota_total = 0
    passed: list[int] = []
    hits_of = dict(zip(indexes, (c[1] for c in counters)))
    for i, limit in enumerate(limits):
        if limit is None:
            response.statuses.add(code=OK)
            passed.append(i)
            continue
        if limit.unlimited:
            response.statuses.add(code=OK, limit_remaining=UNLIMITED_REMAINING)
            continue
        after, reset = answers[i]
        hits = hits_of[i]
        before = after - hits
        over = after > limit.requests_per_unit
        _record(config, limit, request.domain, before if before >= 0 else limit.requests_per_unit, after, hits, over)
        status = response.statuses.add()
        status.code = OVER_LIMIT if over and not limit.shadow_mode else OK
        status.current_limit.CopyFrom(_current_limit(limit))
        status.limit_remaining = 0 if over else min(limit.requests_per_unit - after, UNLIMITED_REMAINING)
        status.duration_until_reset.seconds = _reset_seconds(limit, reset)
        quota = settings.quota_mode or limit.quota_mode
        quota_total += quota
        if closest is None or status.limit_remaining < closest[0]:
            closest = (status.limit_remaining, status, limit)
        if status.code == OVER_LIMIT:
            if quota:
                failed_quota += 1
            else:
                failed += 1
                closest = (-1, status, limit)
        else:
            passed.append(i)
    if failed or (quota_total and quota_total == failed_quota):
        response.overall_code = OVER_LIMIT
    if settings.response_headers and closest is not None:
        _, status, limit = closest
        for name, value in ((settings.limit_header, str(limit.requests_per_unit)),
                            (settings.remaining_header, str(status.limit_remaining)),
                            (settings.reset_header, str(status.duration_until_reset.seconds))):
            response.response_headers_to_add.add(key=name, value=value)
    if response.overall_code == OVER_LIMIT and settings.shadow_mode:
        response.overall_code = OK
        config.count("global_shadow_mode")
    if settings.response_dynamic_metadata:
        _dynamic_metadata(request, passed, limits, response)
    return response


__all__ = ["AdapterError", "Code", "RequestError", "should_rate_limit"]
