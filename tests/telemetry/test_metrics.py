"""The service's own metrics, scraped over HTTP from a real server after real gRPC calls."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from policy.runtime.service import PolicyService
from policy.sdk import Code
from policy.testing import ext_authz_request, native_check
from tests.reports._receivers import scrape
from tests.runtime import plugins_for_tests

CONFIG = """
handlers:
  - name: internal-networks
    adapter: listchecker
    params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8", "127.0.0.1"], cachingInterval: 300s}
  - name: deny
    adapter: denier
    params: {status: {code: 7, message: blocked}, validDuration: 60s}
instances:
  - {name: source-ip, template: listentry, params: {value: source.ip | ip("0.0.0.0")}}
  - {name: nothing, template: checknothing, params: {}}
rules:
  - name: internal-only
    actions: [{handler: internal-networks, instances: [source-ip]}]
  - name: block-mallory
    match: request.headers["x-user"] == "mallory"
    actions: [{handler: deny, instances: [nothing]}]
"""

INSIDE, OUTSIDE = ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("192.168.7.7")


async def _serve(policy_server_factory, policy_config, text: str = CONFIG, *plugins, **kw):
    return await policy_server_factory(policy_config(textwrap.dedent(text)), *plugins, unix=False,
                                       metrics_listen="127.0.0.1:0", **kw)


async def test_checks_are_timed_and_counted_by_api_code_and_rule(policy_server_factory, policy_config):
    running = await _serve(policy_server_factory, policy_config)
    native = running.native()
    for i in range(5):
        assert (await native_check(native, {"source.ip": INSIDE, "request.id": f"n{i}"})).precondition.status.code == 0
    for _ in range(2):
        response = await native_check(native, {"source.ip": INSIDE, "request.headers": {"x-user": "mallory"}})
        assert response.precondition.status.code == Code.PERMISSION_DENIED
    response = await native_check(native, {"source.ip": OUTSIDE})
    assert response.precondition.status.code == Code.PERMISSION_DENIED  # not on the list
    authz = running.ext_authz()
    for _ in range(3):
        answer = await authz.Check(ext_authz_request(path="/api", source_ip="10.9.9.9"))
        assert answer.status.code == 0

    result = await scrape(running.service.telemetry.metrics_address)
    assert result.value("policy_check_duration_seconds_count", api="native") == 8
    assert result.value("policy_check_duration_seconds_count", api="ext_authz") == 3
    assert result.value("policy_decisions_total", api="native", code="OK") == 5
    assert result.value("policy_decisions_total", api="ext_authz", code="OK") == 3
    assert result.value("policy_decisions_total", api="native", code="PERMISSION_DENIED") == 3
    assert result.value("policy_rule_decisions_total", rule="block-mallory", code="PERMISSION_DENIED") == 2
    assert result.value("policy_rule_decisions_total", rule="internal-only", code="OK") == 8
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in
                      result.with_name("policy_check_duration_seconds_bucket").items() if ("api", "native") in k))
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == 8  # cumulative, ending at the count
    assert result.value("policy_check_duration_seconds_sum", api="native") > 0
    hits = result.value("policy_decision_cache_hits_total")
    misses = result.value("policy_decision_cache_misses_total")
    assert hits + misses == 11 and hits >= 6  # repeated requests differing only in request.id share an entry
    assert result.value("policy_decision_cache_entries") >= 3
    entries = result.value("policy_decision_cache_entries")
    held = result.value("policy_decision_cache_bytes")
    assert entries * 512 < held <= result.value("policy_decision_cache_max_bytes") == 64 * 1024 * 1024
    assert result.families["policy_decision_cache_hits"].type == "counter"


async def test_adapter_errors_and_timeouts_are_counted_by_handler(policy_server_factory, policy_config):
    running = await _serve(policy_server_factory, policy_config, """
        handlers:
          - {name: broken, adapter: script, failMode: OPEN, params: {behaviour: raise}}
          - {name: slow, adapter: async-script, timeout: 50ms, params: {behaviour: allow, delay: 5}}
        instances:
          - {name: nothing, template: checknothing, params: {}}
        rules:
          - {name: a, actions: [{handler: broken, instances: [nothing]}]}
          - {name: b, match: request.path == "/slow", actions: [{handler: slow, instances: [nothing]}]}
    """, plugins_for_tests)
    native = running.native()
    for _ in range(3):
        assert (await native_check(native, {"request.path": "/"})).precondition.status.code == Code.OK  # fails open
    response = await native_check(native, {"request.path": "/slow"})
    assert response.precondition.status.code == Code.DEADLINE_EXCEEDED
    result = await scrape(running.service.telemetry.metrics_address)
    assert result.value("policy_adapter_errors_total", handler="broken", call="check") == 4
    assert result.value("policy_adapter_timeouts_total", handler="slow", call="check") == 1
    assert result.value("policy_adapter_errors_total", handler="slow", call="check") is None


async def test_quota_grants_and_denials_by_handler(policy_server_factory, policy_config):
    running = await _serve(policy_server_factory, policy_config, """
        handlers:
          - name: per-user
            adapter: memquota
            params: {quotas: [{name: requests, maxAmount: 2, validDuration: 1h}]}
        instances:
          - {name: requests, template: quota, params: {dimensions: {user: 'request.headers["x-user"] | "-"'}}}
        rules:
          - {name: charge, actions: [{handler: per-user, instances: [requests]}]}
    """)
    native = running.native()
    answers = [await native_check(native, {"request.headers": {"x-user": "alice"}}, {"requests": 1})
               for _ in range(3)]
    assert [a.quotas["requests"].granted_amount for a in answers] == [1, 1, 0]
    result = await scrape(running.service.telemetry.metrics_address)
    assert result.value("policy_quota_grants_total", handler="per-user") == 2
    assert result.value("policy_quota_granted_amount_total", handler="per-user") == 2
    assert result.value("policy_quota_denials_total", handler="per-user", code="RESOURCE_EXHAUSTED") == 1
    assert result.value("policy_decisions_total", api="native", code="RESOURCE_EXHAUSTED") == 1


async def test_the_rate_limit_service_is_timed_and_counted(policy_server_factory, policy_config):
    config = policy_config(textwrap.dedent("""
        settings:
          rateLimit: {handler: counts}
        handlers:
          - {name: counts, adapter: memquota, params: {quotas: []}}
    """))
    (config / "shop.yaml").write_text(textwrap.dedent("""
        domain: shop
        descriptors:
          - key: remote_address
            rate_limit: {unit: minute, requests_per_unit: 3}
    """))
    running = await policy_server_factory(config, unix=False, metrics_listen="127.0.0.1:0")
    stub = rls_pb2_grpc.RateLimitServiceStub(running.channel())
    entry = ratelimit_pb2.RateLimitDescriptor.Entry(key="remote_address", value="10.0.0.1")
    request = rls_pb2.RateLimitRequest(domain="shop", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=[entry])])
    codes = [(await stub.ShouldRateLimit(request)).overall_code for _ in range(4)]
    assert codes == [rls_pb2.RateLimitResponse.OK] * 3 + [rls_pb2.RateLimitResponse.OVER_LIMIT]
    result = await scrape(running.service.telemetry.metrics_address)
    assert result.value("policy_check_duration_seconds_count", api="ratelimit") == 4
    assert result.value("policy_decisions_total", api="ratelimit", code="OK") == 3
    assert result.value("policy_decisions_total", api="ratelimit", code="RESOURCE_EXHAUSTED") == 1
    assert result.value("policy_quota_grants_total", handler="counts") == 3
    assert result.value("policy_quota_denials_total", handler="counts", code="RESOURCE_EXHAUSTED") == 1


async def test_reloads_report_generation_result_and_keep_cache_counters(policy_server_factory, policy_config):
    running = await _serve(policy_server_factory, policy_config)
    service, native = running.service, running.native()
    for i in range(4):
        await native_check(native, {"source.ip": INSIDE, "request.id": str(i)})
    before = await scrape(service.telemetry.metrics_address)
    assert before.value("policy_config_generation") == 1
    assert before.value("policy_config_last_reload_success") == 1
    cached = before.value("policy_decision_cache_hits_total")
    assert cached == 3

    policy_config(textwrap.dedent(CONFIG).replace("blocked", "go away"))
    assert await service.reload(force=True)
    after = await scrape(service.telemetry.metrics_address)
    assert after.value("policy_config_generation") == 2 and after.value("policy_config_reloads_total") == 1
    assert after.value("policy_decision_cache_hits_total") == cached  # the retired cache's hits still count
    assert after.value("policy_decision_cache_entries") == 0  # a reload starts an empty cache
    assert after.value("policy_decision_cache_bytes") == 0

    policy_config("handlers: [{name: x, adapter: no-such-adapter}]\n")
    assert not await service.reload(force=True)
    rejected = await scrape(service.telemetry.metrics_address)
    assert rejected.value("policy_config_last_reload_success") == 0
    assert rejected.value("policy_config_reload_failures_total") == 1
    assert rejected.value("policy_config_generation") == 2  # the last good config keeps serving
    assert rejected.value("policy_config_last_reload_timestamp_seconds") >= after.value(
        "policy_config_last_reload_timestamp_seconds")


async def test_two_services_in_one_process_keep_their_own_metrics(policy_server_factory, policy_config, tmp_path):
    first = await _serve(policy_server_factory, policy_config)
    second_config = tmp_path / "second"
    second_config.mkdir()
    (second_config / "policy.yaml").write_text(textwrap.dedent(CONFIG))
    second = await policy_server_factory(second_config, unix=False, metrics_listen="127.0.0.1:0")
    for _ in range(3):
        await native_check(first.native(), {"source.ip": INSIDE})
    await native_check(second.native(), {"source.ip": INSIDE})
    one = await scrape(first.service.telemetry.metrics_address)
    two = await scrape(second.service.telemetry.metrics_address)
    assert one.value("policy_decisions_total", api="native", code="OK") == 3
    assert two.value("policy_decisions_total", api="native", code="OK") == 1
    assert first.service.telemetry.registry is not second.service.telemetry.registry


async def test_a_bad_or_busy_metrics_address_is_a_clear_error(policy_config, policy_host_factory):
    config = policy_config(textwrap.dedent(CONFIG))
    service = PolicyService(config, policy_host_factory(), watch_interval=0, metrics_listen="localhost")
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        await service.start()
    await service.stop()
    busy = PolicyService(config, policy_host_factory(), watch_interval=0, metrics_listen="127.0.0.1:0")
    await busy.start()
    try:
        clash = PolicyService(config, policy_host_factory(), watch_interval=0,
                              metrics_listen=busy.telemetry.metrics_address)
        with pytest.raises(OSError, match="cannot listen"):
            await clash.start()
        await clash.stop()
    finally:
        await busy.stop()
