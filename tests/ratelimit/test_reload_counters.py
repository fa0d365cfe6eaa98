"""Counters survive a config reload when their handler did not change (rate-limit service and Mixer quotas)."""

from __future__ import annotations

from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from policy import Quota, QuotaArgs

OVER = rls_pb2.RateLimitResponse.OVER_LIMIT


def one(value="10.0.0.1"):
    return rls_pb2.RateLimitRequest(domain="shop", descriptors=[ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key="remote_address", value=value)])])


async def test_an_unrelated_change_keeps_the_counters_a_changed_handler_starts_afresh(
        rls_config, policy_server_factory, rls_stub):
    directory = rls_config()
    running = await policy_server_factory(directory)
    stub = rls_stub(running)
    service = running.service
    for _ in range(3):
        await stub.ShouldRateLimit(one())
    handler = service.snapshot.handlers["counts"].handler
    (directory / "unrelated.yaml").write_text("handlers:\n  - {name: other, adapter: memquota, params: {quotas: []}}\n")
    assert await service.reload(force=True)
    assert service.reload_status.generation == 2
    assert service.snapshot.handlers["counts"].handler is handler                # the same handler, kept
    assert (await stub.ShouldRateLimit(one())).overall_code == OVER              # 4th of 3: still counted
    assert service.snapshot.rate_limit.stats["shop.remote_address.total_hits"] == 4   # statistics continue
    policy = directory / "policy.yaml"
    policy.write_text(policy.read_text().replace("params: {quotas: []}",
                                                 "params: {quotas: [], maxCounters: 5000}"))
    assert await service.reload(force=True)
    assert service.snapshot.handlers["counts"].handler is not handler            # params changed: rebuilt
    assert (await stub.ShouldRateLimit(one())).statuses[0].limit_remaining == 2  # fresh counters
    await service.stop()                                                         # every handler closed once


async def test_a_mixer_quota_keeps_its_allocations_across_a_reload(tmp_path, policy_server_factory):
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "policy.yaml").write_text("""
handlers:
  - name: q
    adapter: memquota
    params: {quotas: [{name: rq, maxAmount: 2, validDuration: 1h}]}
instances:
  - {name: rq, template: quota, params: {dimensions: {}}}
rules:
  - {actions: [{handler: q, instances: [rq]}]}
""")
    running = await policy_server_factory(directory)
    service = running.service
    handler = service.snapshot.handlers["q"].handler
    assert (await _quota(handler)).granted_amount == 1
    (directory / "note.yaml").write_text("{}\n")
    assert await service.reload(force=True)
    kept = service.snapshot.handlers["q"].handler
    assert kept is handler
    assert (await _quota(kept)).granted_amount == 1
    assert (await _quota(kept)).granted_amount == 0                               # 3rd of 2


async def _quota(handler):
    result = handler.quota(Quota("rq", {}), QuotaArgs("rq", 1))
    return await result if hasattr(result, "__await__") else result
