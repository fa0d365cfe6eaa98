"""A missing key of a present map reads as "" (Mixer), so a denier rule on it still fires.

Mixer's IL indexes a map with ANLookup/NLookup, which push "" for a key the map lacks
(mixer/pkg/il/interpreter); only an absent map fails the lookup (tests.go: the
``match(request.headers["user-agent"], "curl*")`` cases with an empty and with no
``request.headers``). Checked here through Mixer documents, the denier adapter and the
decision cache: a cached decision for one case must not answer the other.
"""

from __future__ import annotations

import pytest

from policy.sdk import Code
from tests.envoy.conftest import authz, check_request, envoy_server  # noqa: F401 (fixture)

API = "apiVersion: config.istio.io/v1alpha2"

CONFIG = f"""
{API}
kind: handler
metadata: {{name: refuse, namespace: istio-system}}
spec:
  compiledAdapter: denier
  params: {{status: {{code: 7, message: api key required}}, validDuration: 60s, validUseCount: 1000}}
---
{API}
kind: instance
metadata: {{name: nothing, namespace: istio-system}}
spec: {{compiledTemplate: checknothing}}
---
{API}
kind: rule
metadata: {{name: require-key, namespace: istio-system}}
spec:
  match: request.headers["x-api-key"] != "secret"
  actions: [{{handler: refuse, instances: [nothing]}}]
"""


@pytest.fixture
async def service(policy_config, policy_service_factory):
    return await policy_service_factory(policy_config(CONFIG))


async def test_request_without_the_header_is_denied(service):
    decision = await service.check({"request.headers": {"user-agent": "curl"}})
    assert decision.code == Code.PERMISSION_DENIED
    assert [r.split(".")[0].split("/")[-1] for r in decision.rules] == ["require-key"]
    refs = {(r.name, r.map_key, r.presence.name) for r in decision.referenced}
    assert ("request.headers", "x-api-key", "ABSENT") in refs


async def test_request_with_an_empty_map_is_denied(service):
    decision = await service.check({"request.headers": {}})
    assert decision.code == Code.PERMISSION_DENIED


async def test_request_with_the_key_is_allowed(service):
    decision = await service.check({"request.headers": {"x-api-key": "secret"}})
    assert decision.allowed


async def test_request_without_the_map_does_not_match_as_in_mixer(service):
    # Mixer: "lookup failed: 'request.headers'", so the rule does not apply.
    decision = await service.check({"request.path": "/"})
    assert decision.allowed
    refs = {(r.name, r.map_key, r.presence.name) for r in decision.referenced}
    assert ("request.headers", None, "ABSENT") in refs


MISSING_KEY = {"request.headers": {"user-agent": "curl"}}
MISSING_MAP = {"request.path": "/"}


@pytest.mark.parametrize("order", ["key-first", "map-first"])
async def test_cached_decisions_keep_absent_map_and_absent_key_apart(service, order):
    first, second = (MISSING_KEY, MISSING_MAP) if order == "key-first" else (MISSING_MAP, MISSING_KEY)
    hits = []
    for values in (first, first, second, second, first):
        decision = await service.check(values)
        assert decision.allowed == (values is MISSING_MAP), values
        hits.append(decision.cache_hit)
    assert hits == [False, True, False, True, True]


async def test_envoy_request_without_the_header_is_denied(envoy_server):  # noqa: F811
    # ext_authz translates only the header keys a config reads; the map is there whenever
    # Envoy sent headers, so the missing key still reads as "" and the denier fires.
    server = await envoy_server(CONFIG)
    stub = authz(server, "tcp")
    without = await stub.Check(check_request(headers={"user-agent": "curl"}))
    assert without.status.code == Code.PERMISSION_DENIED
    again = await stub.Check(check_request(headers={"user-agent": "curl", "x-request-id": "2"}))
    assert again.status.code == Code.PERMISSION_DENIED
    allowed = await stub.Check(check_request(headers={"x-api-key": "secret"}))
    assert allowed.status.code == Code.OK
