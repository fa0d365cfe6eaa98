"""RLS documents and settings.rateLimit at config load: errors name file, document and field; Redis backend."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from policy.config import parse_config
from policy.sdk import ConfigError

BAD_RLS = """
domain: shop
descriptors:
  - key: a
    rate_limit: {unit: fortnight, requests_per_unit: 1}
  - key: b
    rate_limit: {unit: second, requests_per_unit: 1, unlimited: true}
  - key: c
    colour: red
  - key: ""
  - key: d
    rate_limit: {unit: minute, requests_per_unit: -1}
  - key: e
    rate_limit: {unit: minute, requests_per_unit: 1, name: x, replaces: [{name: x}]}
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1}
"""


def issues(path, host):
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    return [(i.file.rsplit("/", 1)[-1], i.field, i.message) for i in info.value.issues]


def test_every_rls_error_is_reported_with_its_field(rls_config, policy_host_factory):
    found = issues(rls_config(rls=BAD_RLS), policy_host_factory())
    fields = {field for _, field, _ in found}
    assert {"descriptors[0].rate_limit.unit", "descriptors[1].rate_limit.unit", "descriptors[2].colour",
            "descriptors[3].key", "descriptors[4].rate_limit.requests_per_unit",
            "descriptors[5].rate_limit.replaces[0].name", "descriptors[6]"} <= fields
    assert all(file == "shop.yaml" for file, field, _ in found if field.startswith("descriptors"))
    assert any("duplicate descriptor composite key 'shop.a'" in m for _, _, m in found)


def test_a_duplicate_domain_and_an_unknown_handler_are_errors(rls_config, policy_host_factory, tmp_path):
    path = rls_config(handler="nope")
    (path / "ratelimit" / "again.yaml").write_text("domain: shop\ndescriptors: []\n")
    found = issues(path, policy_host_factory())
    assert any(f == "rateLimit.handler" and "no handler named 'nope'" in m for _, f, m in found)
    assert any(f == "domain" and "duplicate domain 'shop'" in m for _, f, m in found)
    # Both documents start on line 2: the error still names both files, neither replaces the other.
    (path / "ratelimit" / "again.yaml").write_text("\ndomain: shop\ndescriptors: []\n")
    (path / "ratelimit" / "shop.yaml").write_text("\n" + (path / "ratelimit" / "shop.yaml").read_text().lstrip())
    with pytest.raises(ConfigError) as info:
        parse_config(path, policy_host_factory())
    duplicate = [i for i in info.value.issues if "duplicate domain" in i.message]
    assert len(duplicate) == 1
    named = {duplicate[0].file.rsplit("/", 1)[-1], duplicate[0].message}
    assert "shop.yaml" in str(named) and "again.yaml" in str(named)


def test_the_backing_handler_is_built_and_not_reported_unused(rls_config, policy_host_factory):
    model = parse_config(rls_config(), policy_host_factory())
    assert model.used_handlers == ["counts"]
    assert not any("not used" in w.message for w in model.warnings)
    assert sorted(model.rate_limit.domains) == ["shop"]


REDIS_BACKEND = """
  - name: shared
    adapter: redisquota
    params: {{redisServerUrl: "{url}", timeout: 200ms, retryInterval: 100ms, failMode: {mode}}}
"""


def shop_request(value):
    return rls_pb2.RateLimitRequest(domain="shop", descriptors=[ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key="remote_address", value=value)])])


@pytest.mark.parametrize("mode", ["CLOSED", "OPEN"])
async def test_redis_backed_service_shares_counters_and_honours_the_fail_mode(
        rls_config, policy_server_factory, rls_stub, private_redis, mode):
    if 60 - time.time() % 60 < 2:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    path = rls_config(handler="shared", extra=REDIS_BACKEND.format(url=private_redis.url, mode=mode))
    first, second = [rls_stub(await policy_server_factory(path)) for _ in range(2)]
    codes = [(await (first if i % 2 else second).ShouldRateLimit(shop_request("r"))).overall_code for i in range(4)]
    assert codes == [rls_pb2.RateLimitResponse.OK] * 3 + [rls_pb2.RateLimitResponse.OVER_LIMIT]
    private_redis.kill()
    if mode == "CLOSED":
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await first.ShouldRateLimit(shop_request("down"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    else:
        assert (await first.ShouldRateLimit(shop_request("down"))).overall_code == rls_pb2.RateLimitResponse.OK
    private_redis.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = await first.ShouldRateLimit(shop_request("back"))
            if answer.statuses[0].limit_remaining == 2:   # counted in Redis again
                break
        except grpc.aio.AioRpcError:
            pass
        assert time.monotonic() < deadline, "the rate-limit service did not recover"
        await asyncio.sleep(0.05)


def test_header_names_and_the_near_limit_ratio_are_checked(tmp_path, policy_host_factory):
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "policy.yaml").write_text(
        "settings:\n  rateLimit: {handler: counts, limitHeader: 'Rate Limit', resetHeader: '', nearLimitRatio: 1.5}\n"
        "handlers:\n  - {name: counts, adapter: memquota, params: {quotas: []}}\n")
    (directory / "rls.yaml").write_text("domain: d\ndescriptors: []\n")
    found = issues(directory, policy_host_factory())
    assert {f for _, f, _ in found} >= {"rateLimit.limitHeader", "rateLimit.resetHeader", "rateLimit.nearLimitRatio"}
