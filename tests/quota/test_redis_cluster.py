"""redisquota on a real 3-node Redis Cluster: the same script, keys spread by hash tag, exact limits."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from adapters.redisquota import RedisQuotaAdapter
from policy import Quota, QuotaArgs

pytestmark = pytest.mark.slow


def params(url, name, **quota):
    return {"redisServerUrl": url, "cluster": True, "connectionPoolSize": 4,
            "quotas": [{"name": name, "maxAmount": 50, "validDuration": "1h", **quota}]}


@pytest.mark.parametrize("algorithm", ["FIXED_WINDOW", "ROLLING_WINDOW"])
async def test_64_tasks_on_a_cluster_are_granted_exactly_the_limit_per_counter(build, redis_cluster, unique,
                                                                               algorithm):
    name = unique("cl")
    handler = build(RedisQuotaAdapter, params(redis_cluster.url, name, rateLimitAlgorithm=algorithm,
                                              bucketDuration="6m"))
    await handler.start()
    users = [f"user-{i}" for i in range(8)]

    async def caller(index):
        granted = {u: 0 for u in users}
        for call in range(8):
            user = users[(index + call) % 8]
            result = await handler.quota(Quota(name, {"user": user}), QuotaArgs(name, 1))
            granted[user] += result.granted_amount
        return granted

    results = await asyncio.gather(*(caller(i) for i in range(64)))
    for user in users:
        assert sum(r[user] for r in results) == 50   # 64 x 8 / 8 = 64 calls per user, 50 granted


async def test_counters_spread_over_the_nodes_and_every_key_has_a_ttl(build, redis_cluster, unique):
    name = unique("spread")
    handler = build(RedisQuotaAdapter, params(redis_cluster.url, name))
    for i in range(30):
        assert (await handler.quota(Quota(name, {"ip": f"10.0.0.{i}"}), QuotaArgs(name, 1,
                                    deduplication_id=f"d{i}"))).ok
    holders = 0
    for node in redis_cluster.nodes:
        client = aioredis.Redis(port=node.port)
        keys = [k async for k in client.scan_iter(match=f"quota:{{{name}*")]
        holders += bool(keys)
        for key in keys:
            assert await client.pttl(key) > 0
        await client.aclose()
    assert holders >= 2


async def test_rate_limit_counting_in_several_slots_stops_as_the_reference_does(build, redis_cluster, unique):
    from redis.crc import key_slot

    handler = build(RedisQuotaAdapter, params(redis_cluster.url, "unused"))
    domain = unique("dom")
    a, b = (f"{domain}|k=a", 1, 5, 3600.0), (f"{domain}|k=b", 1, 1, 3600.0)
    assert key_slot(f"{{rls|{a[0]}}}".encode()) != key_slot(f"{{rls|{b[0]}}}".encode())
    assert [count for count, _ in await handler.rate_limit_count([a, b])] == [1, 1]
    # Default: every counter charged, also past its limit.
    assert [count for count, _ in await handler.rate_limit_count([a, b])] == [2, 2]
    # Stop mode: 'b' would go over, so only 'b' is charged (read first, then charged, across slots).
    assert [count for count, _ in await handler.rate_limit_count([a, b], True)] == [2, 3]
    assert [count for count, _ in await handler.rate_limit_count([(a[0], 0, 5, 3600.0)])] == [2]
