"""Fixtures for the rate-limit service tests: a config directory with RLS documents, a server, Envoy's stub."""

from __future__ import annotations

import textwrap

import pytest
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from tests.quota.conftest import build, private_redis, redis_cluster, redis_server  # noqa: F401  (real Redis, handlers)

POLICY = """
settings:
  rateLimit: {{handler: {handler}, responseHeaders: {headers}, shadowMode: {shadow}}}
handlers:
  - name: counts
    adapter: memquota
    params: {{quotas: []}}
{extra}
"""

RLS = """
domain: shop
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: path
    value: /api/*
    rate_limit: {unit: hour, requests_per_unit: 2, name: api}
  - key: path
    value: /health
    rate_limit: {unlimited: true}
  - key: path
    rate_limit: {unit: second, requests_per_unit: 1000}
  - key: tenant
    value: acme
    descriptors:
      - key: user
        rate_limit: {unit: day, requests_per_unit: 2}
  - key: bulk
    rate_limit: {unit: hour, requests_per_unit: 1, replaces: [{name: api}]}
  - key: trial
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
"""


@pytest.fixture
def rls_config(tmp_path):
    """``rls_config(handler="counts", headers=False, shadow=False, extra="", rls=RLS)`` → a config directory."""

    def make(handler="counts", headers=False, shadow=False, extra="", rls=RLS, settings=True):
        directory = tmp_path / "config"
        (directory / "ratelimit").mkdir(parents=True, exist_ok=True)
        policy = POLICY.format(handler=handler, headers=str(headers).lower(), shadow=str(shadow).lower(),
                               extra=extra)
        if not settings:
            policy = policy.split("handlers:", 1)[1]
            policy = "handlers:" + policy
        (directory / "policy.yaml").write_text(policy)
        (directory / "ratelimit" / "shop.yaml").write_text(textwrap.dedent(rls))
        return directory

    return make


@pytest.fixture
def rls_stub():
    """``rls_stub(running)`` → Envoy's RateLimitServiceStub on a running server's TCP channel."""
    return lambda running: rls_pb2_grpc.RateLimitServiceStub(running.channel())


async def should_rate_limit(config, handler, request):
    """One RateLimitRequest decided by the runtime and translated back, as the server does it."""
    from policy.runtime.ratelimit import decide
    from policy.servers.ratelimit import descriptors_from_request, response_from_decision

    decision = await decide(config, handler, request.domain, descriptors_from_request(request), request.hits_addend)
    return response_from_decision(request, decision)
