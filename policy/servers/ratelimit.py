"""The Envoy rate-limit API, ``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``.

A translator only: the snapshot's ``rate_limit`` config (``settings.rateLimit``
plus RLS documents) and its backing handler answer; see :mod:`policy.config.ratelimit`.
A malformed request is answered INVALID_ARGUMENT; no rate-limit config, or a
handler that cannot back the service, FAILED_PRECONDITION; the handler's backend
down (failing closed) UNAVAILABLE — Envoy then applies its own
``failure_mode_deny``.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2

from policy.runtime.ratelimit import RequestError, should_rate_limit
from policy.runtime.service import PolicyService
from policy.sdk import AdapterError, Code, RateLimitHandler
from policy.servers._grpc import add_unary_handlers, decode

log = logging.getLogger("policy.servers.ratelimit")

SERVICE_NAME = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name


class RateLimitServicer:
    """Serves ShouldRateLimit from the snapshot in force."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service

    async def ShouldRateLimit(self, data: bytes, context: grpc.aio.ServicerContext) -> Any:
        """Answer one rate-limit request."""
        request = await decode(rls_pb2.RateLimitRequest, data, context)
        snapshot = self.service.snapshot
        config = getattr(snapshot, "rate_limit", None)
        if config is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "no rate-limit service is configured (settings.rateLimit)")
        entry = snapshot.handlers.get(config.settings.handler)
        handler = getattr(entry, "handler", None)
        if not isinstance(handler, RateLimitHandler):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"handler {config.settings.handler!r} cannot back the rate-limit service")
        started = perf_counter()
        try:
            response = await should_rate_limit(config, handler, request)
            self.service.telemetry.observe_rate_limit(config.settings.handler, perf_counter() - started,
                                                      response.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT)
            return response
        except RequestError as exc:
            config.count("invalid_requests")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except AdapterError as exc:
            config.count("backend_errors")
            self.service.telemetry.handler_failed(config.settings.handler, "ratelimit",
                                                  exc.code == Code.DEADLINE_EXCEEDED)
            code = grpc.StatusCode.UNAVAILABLE if exc.code == Code.UNAVAILABLE else grpc.StatusCode.INTERNAL
            await context.abort(code, f"{config.settings.handler}: {exc.message}")
        except Exception as exc:
            config.count("service_errors")
            log.exception("ShouldRateLimit failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


def register(server: grpc.aio.Server, service: PolicyService) -> list[str]:
    """Add the rate-limit API to ``server``; returns the service names registered."""
    servicer = RateLimitServicer(service)
    add_unary_handlers(server, SERVICE_NAME, {
        "ShouldRateLimit": (servicer.ShouldRateLimit, rls_pb2.RateLimitResponse),
    })
    return [SERVICE_NAME]
