"""The Envoy rate-limit API, ``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``.

A translator only: the snapshot's ``rate_limit`` config (``settings.rateLimit``
plus RLS documents) and its backing handler answer through ``PolicyService.rate_limit``
(:mod:`policy.runtime.ratelimit`); this module only translates protobufs to and from it.
A malformed request is answered INVALID_ARGUMENT; no rate-limit config, or a
handler that cannot back the service, FAILED_PRECONDITION; the handler's backend
down (failing closed) UNAVAILABLE — Envoy then applies its own
``failure_mode_deny``.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2

from policy.runtime.ratelimit import RateLimitDecision, RateLimitDescriptor, RequestError
from policy.runtime.service import PolicyService, RateLimitUnavailable
from policy.sdk import AdapterError, Code
from policy.servers._grpc import add_unary_handlers, decode

log = logging.getLogger("policy.servers.ratelimit")

SERVICE_NAME = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name
OK = rls_pb2.RateLimitResponse.OK
OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT
_UNIT_NAMES = {v: k for k, v in rls_pb2.RateLimitResponse.RateLimit.Unit.items()}
_UNIT_VALUES = dict(rls_pb2.RateLimitResponse.RateLimit.Unit.items())
#: current_limit messages by (name, requests_per_unit, unit): built once (bounded: cleared when full).
_CURRENT_LIMITS: dict[tuple[str, int, str], Any] = {}


def descriptors_from_request(request: Any) -> list[RateLimitDescriptor]:
    """The request's descriptors as the runtime takes them."""
    out = []
    for descriptor in request.descriptors:
        entries = [(e.key, e.value) for e in descriptor.entries]
        limit = None
        if descriptor.HasField("limit"):
            limit = (descriptor.limit.requests_per_unit, _UNIT_NAMES.get(descriptor.limit.unit, "UNKNOWN"))
        hits = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else None
        out.append((entries, limit, hits))
    return out


def _current_limit(limit: Any) -> Any:
    key = (limit.name, limit.requests_per_unit, limit.unit)
    message = _CURRENT_LIMITS.get(key)
    if message is None:
        if len(_CURRENT_LIMITS) >= 10_000:
            _CURRENT_LIMITS.clear()
        message = _CURRENT_LIMITS[key] = rls_pb2.RateLimitResponse.RateLimit(
            name=limit.name, requests_per_unit=limit.requests_per_unit, unit=_UNIT_VALUES[limit.unit])
    return message


def _dynamic_metadata(request: Any, merged: dict[str, Any], response: Any) -> None:
    """The reference's dynamic metadata: the domain, the descriptors as sent, hits, merged ``metadata``."""
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
    if merged:
        fields["metadata"] = merged
    response.dynamic_metadata.update(fields)


def response_from_decision(request: Any, decision: RateLimitDecision) -> Any:
    """The RateLimitResponse for a decision (``request`` supplies the dynamic metadata's descriptors)."""
    response = rls_pb2.RateLimitResponse(overall_code=OVER_LIMIT if decision.over_limit else OK)
    add = response.statuses.add
    for over, limit, remaining, reset in decision.statuses:
        status = add(code=OVER_LIMIT if over else OK, limit_remaining=remaining)
        if limit is not None:
            status.current_limit.CopyFrom(_current_limit(limit))
        if reset is not None:
            status.duration_until_reset.seconds = reset
    for name, value in decision.headers:
        response.response_headers_to_add.add(key=name, value=value)
    if decision.metadata is not None:
        _dynamic_metadata(request, decision.metadata, response)
    return response


class RateLimitServicer:
    """Serves ShouldRateLimit from the snapshot in force."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service

    async def ShouldRateLimit(self, data: bytes, context: grpc.aio.ServicerContext) -> Any:
        """Answer one rate-limit request."""
        request = await decode(rls_pb2.RateLimitRequest, data, context)
        try:
            decision = await self.service.rate_limit(request.domain, descriptors_from_request(request),
                                                     request.hits_addend)
        except RateLimitUnavailable as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except RequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except AdapterError as exc:
            code = grpc.StatusCode.UNAVAILABLE if exc.code == Code.UNAVAILABLE else grpc.StatusCode.INTERNAL
            await context.abort(code, exc.message)
        except Exception as exc:
            log.exception("ShouldRateLimit failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        return response_from_decision(request, decision)


def register(server: grpc.aio.Server, service: PolicyService) -> list[str]:
    """Add the rate-limit API to ``server``; returns the service names registered."""
    servicer = RateLimitServicer(service)
    add_unary_handlers(server, SERVICE_NAME, {
        "ShouldRateLimit": (servicer.ShouldRateLimit, rls_pb2.RateLimitResponse),
    })
    return [SERVICE_NAME]
