"""Answering ``ShouldRateLimit``: limits looked up, counters charged through the backing handler.

Semantics (envoyproxy/ratelimit's, see ``src/service/ratelimit.go`` and
``src/limiter/base_limiter.go``):

- hits: the descriptor's ``hits_addend`` when set (0 only reads the counter),
  else the request's, else 1.
- a descriptor's own ``limit`` in the request overrides the configured one (never
  in shadow mode); ``unlimited`` answers OK with ``limit_remaining`` 2^32-1; a
  limit named in another matched limit's ``replaces`` is dropped.
- counters are charged all or nothing: when one descriptor is over its limit no
  other is charged (the request is rejected anyway), and a counter over its
  limit is never incremented.
- a limit in shadow mode answers OK but counts ``shadow_mode``; its counter is
  charged only when the request is not rejected by another limit. Global shadow
  mode keeps per-descriptor codes but answers ``overall_code`` OK.
- ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` headers (draft 03) describe the
  descriptor closest to its limit, when enabled.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2

from policy.ratelimit.config import UNIT_SECONDS, RateLimit, RateLimitConfig
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
    for index, descriptor in enumerate(request.descriptors):
        entries = _entries(descriptor)
        if descriptor.HasField("limit"):
            unit = _UNIT_NAMES.get(descriptor.limit.unit, "UNKNOWN")
            if unit not in UNIT_SECONDS:
                raise RequestError(f"descriptors[{index}].limit.unit: not a rate limit unit ({unit})")
            key = ".".join(f"{k}_{v}" if v else k for k, v in entries)
            limits.append(RateLimit(descriptor.limit.requests_per_unit, unit, f"{request.domain}.{key}"))
        else:
            limits.append(config.lookup(request.domain, entries))
    replaced = {name for limit in limits if limit is not None for name in limit.replaces}
    if replaced:
        limits = [None if limit is not None and limit.name and limit.name in replaced else limit
                  for limit in limits]
    return limits


_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in "%|=,{}\n\r\t :"})


def _counter_id(domain: str, entries: list[tuple[str, str]], limit: RateLimit) -> str:
    """A counter id from request values: escaped (no hash-tag braces survive), hashed when long."""
    parts = [domain.translate(_ESCAPES)]
    parts += [f"{k.translate(_ESCAPES)}={v.translate(_ESCAPES)}" for k, v in entries]
    parts.append(limit.unit)
    text = "|".join(parts)
    if len(text) > 200:
        return f"{parts[0][:64]}|#{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"
    return text


async def _charge(handler: Any, counters: list[tuple[str, int, int, float]], independent: bool) -> list[Any]:
    if not counters:
        return []
    answers = handler.rate_limit(counters, independent)
    if inspect.isawaitable(answers):
        answers = await answers
    return list(answers)


def _status(limit: RateLimit, fits: bool, remaining: int, reset: float) -> Any:
    status = rls_pb2.RateLimitResponse.DescriptorStatus(
        code=OK if fits else OVER_LIMIT,
        current_limit=rls_pb2.RateLimitResponse.RateLimit(
            name=limit.name, requests_per_unit=limit.requests_per_unit,
            unit=rls_pb2.RateLimitResponse.RateLimit.Unit.Value(limit.unit)),
        limit_remaining=max(0, min(remaining, UNLIMITED_REMAINING)),
    )
    status.duration_until_reset.FromMilliseconds(max(0, round(reset * 1000)))
    return status


async def should_rate_limit(config: RateLimitConfig, handler: Any, request: Any) -> Any:
    """Answer one RateLimitRequest; raises RequestError (bad request) or AdapterError (backend down)."""
    if not request.domain:
        raise RequestError("rate limit domain must not be empty")
    if not request.descriptors:
        raise RequestError("rate limit descriptor list must not be empty")
    limits = _limits(config, request)
    default_hits = request.hits_addend or 1
    enforced: list[int] = []
    shadowed: list[int] = []
    counters: dict[int, tuple[str, int, int, float]] = {}
    for i, (descriptor, limit) in enumerate(zip(request.descriptors, limits)):
        if limit is None or limit.unlimited:
            continue
        hits = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else default_hits
        counters[i] = (_counter_id(request.domain, _entries(descriptor), limit), hits, limit.requests_per_unit,
                       float(limit.window))
        config.count("total_hits", hits)
        (shadowed if limit.shadow_mode or config.settings.shadow_mode else enforced).append(i)
    answers: dict[int, tuple[bool, int, float]] = {}
    global_shadow = config.settings.shadow_mode
    for i, answer in zip(enforced, await _charge(handler, [counters[i] for i in enforced], False)):
        answers[i] = answer
    rejected = any(not answers[i][0] for i in enforced)
    if shadowed:
        # Shadowed limits never reject; they are charged only when the request goes through.
        probe = [(c[0], 0 if rejected else c[1], c[2], c[3]) for c in (counters[i] for i in shadowed)]
        for i, answer in zip(shadowed, await _charge(handler, probe, True)):
            fits = answer[0] and (not rejected or answer[1] >= counters[i][1])
            answers[i] = (fits, answer[1], answer[2])
    response = rls_pb2.RateLimitResponse(overall_code=OK)
    closest: tuple[int, Any, RateLimit] | None = None
    for i, limit in enumerate(limits):
        if limit is None:
            response.statuses.add(code=OK)
            continue
        if limit.unlimited:
            response.statuses.add(code=OK, limit_remaining=UNLIMITED_REMAINING)
            continue
        fits, remaining, reset = answers[i]
        hits = counters[i][1]
        status = _status(limit, fits, remaining, reset)
        if not fits:
            config.count("over_limit", hits)
            config.count(f"{limit.full_key}.over_limit", hits)
            if limit.shadow_mode:
                config.count("shadow_mode", hits)
                config.count(f"{limit.full_key}.shadow_mode", hits)
                status.code = OK
        else:
            config.count("within_limit", hits)
        response.statuses.append(status)
        if status.code == OVER_LIMIT:
            response.overall_code = OVER_LIMIT
        rank = -1 if status.code == OVER_LIMIT else status.limit_remaining
        if closest is None or rank < closest[0]:
            closest = (rank, status, limit)
    if response.overall_code == OVER_LIMIT and global_shadow:
        response.overall_code = OK
        config.count("global_shadow_mode")
    if config.settings.response_headers and closest is not None:
        _, status, limit = closest
        reset = math.ceil(status.duration_until_reset.ToMilliseconds() / 1000)
        for name, value in (("RateLimit-Limit", f"{limit.requests_per_unit}, {limit.requests_per_unit};w={limit.window}"),
                            ("RateLimit-Remaining", str(status.limit_remaining)),
                            ("RateLimit-Reset", str(reset))):
            response.response_headers_to_add.add(key=name, value=value)
    return response


__all__ = ["AdapterError", "Code", "RequestError", "should_rate_limit"]
