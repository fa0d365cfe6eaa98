"""redisquota against a real redis-server: windows, dedup, keys, TTLs, scripts, fast path, URLs, params."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from adapters._quota.lua import SHA
from adapters.redisquota import RedisQuotaAdapter
from policy import Code, Quota, QuotaArgs, parse_params
from tests.quota.redis_procs import RedisServer


def quota_params(url, name, **quota):
    extra = {k: quota.pop(k) for k in list(quota) if k in ("failMode", "localOverLimitCache", "retryInterval",
                                                             "minDeduplicationDuration", "cluster", "timeout")}
    return {"redisServerUrl": url, "quotas": [{"name": name, **quota}], **extra}


async def ask(handler, name, amount=1, dims=None, **kw):
    return await handler.quota(Quota(name, dims or {}), QuotaArgs(name, amount, **kw))


@pytest.fixture
async def rclient(redis_server):
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def drive(handler, fake_clock):
    """Count with the fake clock instead of Redis's TIME (the script takes the time as its last argument)."""
    handler.limiter.clock_ms = lambda: round(fake_clock.clock.now() * 1000)
    return handler


async def test_fixed_window_starts_at_the_first_charge_as_mixers(build, redis_server, unique, fake_clock):
    name = unique("fixed")
    handler = drive(build(RedisQuotaAdapter, quota_params(redis_server.url, name, maxAmount=3, validDuration="1s"),
                          fake_clock.clock), fake_clock)
    fake_clock.advance(0.7)  # an aligned window would end in 0.3s; Mixer's lasts 1s from the first charge
    results = [await ask(handler, name) for _ in range(4)]
    assert [r.granted_amount for r in results] == [1, 1, 1, 0]
    assert results[3].status.code == Code.RESOURCE_EXHAUSTED and results[3].valid_duration == 0.0
    assert results[2].remaining == 0 and results[0].remaining == 2
    assert results[0].valid_duration == pytest.approx(1.0)
    fake_clock.advance(0.5)
    assert (await ask(handler, name)).granted_amount == 0
    fake_clock.advance(0.5)
    assert (await ask(handler, name)).granted_amount == 1


async def test_aligned_fixed_window_resets_at_the_clock_boundary(build, redis_server, unique, fake_clock):
    name = unique("aligned")
    handler = drive(build(RedisQuotaAdapter, quota_params(
        redis_server.url, name, maxAmount=3, validDuration="1s", rateLimitAlgorithm="ALIGNED_FIXED_WINDOW",
        localOverLimitCache=False), fake_clock.clock), fake_clock)
    fake_clock.advance(0.7)
    results = [await ask(handler, name) for _ in range(4)]
    assert [r.granted_amount for r in results] == [1, 1, 1, 0]
    assert results[2].valid_duration == pytest.approx(0.3)
    fake_clock.advance(0.31)
    assert (await ask(handler, name)).granted_amount == 1


async def test_rolling_window_with_sub_second_buckets(build, redis_server, unique, fake_clock):
    name = unique("rolling")
    raw = quota_params(redis_server.url, name, maxAmount=3, validDuration="600ms", bucketDuration="200ms",
                       rateLimitAlgorithm="ROLLING_WINDOW", localOverLimitCache=False)
    handler = drive(build(RedisQuotaAdapter, raw, fake_clock.clock), fake_clock)
    assert (await ask(handler, name, 3)).granted_amount == 3
    denied = await ask(handler, name)
    assert denied.status.code == Code.RESOURCE_EXHAUSTED and denied.valid_duration == 0.0
    fake_clock.advance(0.59)
    assert (await ask(handler, name)).granted_amount == 0
    fake_clock.advance(0.02)
    assert (await ask(handler, name, 3)).granted_amount == 3


async def test_release_frees_the_newest_grants_of_a_window(build, redis_server, unique, fake_clock):
    name = unique("release")
    raw = quota_params(redis_server.url, name, maxAmount=3, validDuration="600ms", bucketDuration="200ms",
                       rateLimitAlgorithm="ROLLING_WINDOW", localOverLimitCache=False)
    handler = drive(build(RedisQuotaAdapter, raw, fake_clock.clock), fake_clock)
    assert (await ask(handler, name, 2)).granted_amount == 2
    fake_clock.advance(0.2)
    assert (await ask(handler, name, 1)).granted_amount == 1
    released = await ask(handler, name, -2, deduplication_id="r")
    assert released.ok and released.granted_amount == 2
    assert (await ask(handler, name, -2, deduplication_id="r")).granted_amount == 2   # a retry frees nothing more
    assert (await ask(handler, name, 2)).granted_amount == 2
    fake_clock.advance(0.41)                       # the first bucket (1 left) leaves the window
    assert (await ask(handler, name, 2)).granted_amount == 0
    assert (await ask(handler, name, 1)).granted_amount == 1


async def test_best_effort_overrides_and_denied_calls_are_not_charged(build, redis_server, unique):
    name = unique("best")
    handler = build(RedisQuotaAdapter, quota_params(
        redis_server.url, name, maxAmount=5, validDuration="1h",
        overrides=[{"dimensions": {"user": "vip"}, "maxAmount": 7}]))
    assert (await ask(handler, name, 4)).granted_amount == 4
    assert (await ask(handler, name, 3)).granted_amount == 0
    partial = await ask(handler, name, 3, best_effort=True)
    assert partial.granted_amount == 1 and partial.ok
    assert (await ask(handler, name, 7, {"user": "vip"})).granted_amount == 7
    assert (await ask(handler, name, 1, {"user": "vip"})).granted_amount == 0


async def test_a_retried_call_is_not_charged_twice(build, redis_server, unique):
    name = unique("dedup")
    handler = build(RedisQuotaAdapter, quota_params(redis_server.url, name, maxAmount=3, validDuration="1h"))
    first = await ask(handler, name, 2, deduplication_id="req-1")
    retry = await ask(handler, name, 2, deduplication_id="req-1")
    assert first.granted_amount == retry.granted_amount == 2 and retry.ok
    assert handler.stats["deduplicated"] == 1
    assert (await ask(handler, name, 1, deduplication_id="req-2")).granted_amount == 1
    assert (await ask(handler, name, 1, deduplication_id="req-3")).granted_amount == 0


async def test_allocation_mode_releases_and_keys_carry_ttls(build, redis_server, rclient, unique):
    name = unique("alloc")
    handler = build(RedisQuotaAdapter, {**quota_params(redis_server.url, name, maxAmount=3),
                                        "allocationIdleTimeout": "30s"})
    assert (await ask(handler, name, 3)).granted_amount == 3
    assert (await ask(handler, name, 1)).granted_amount == 0
    assert (await ask(handler, name, -2)).granted_amount == 2
    assert (await ask(handler, name, 2)).granted_amount == 2
    keys = [k async for k in rclient.scan_iter(match=f"quota:{{{name}*")]
    assert len(keys) == 1 and 0 < await rclient.pttl(keys[0]) <= 30_000


async def test_every_key_has_a_ttl_and_a_counters_keys_share_one_slot(build, redis_server, rclient, unique):
    name = unique("keys")
    handler = build(RedisQuotaAdapter, quota_params(redis_server.url, name, maxAmount=10, validDuration="1m",
                                                    rateLimitAlgorithm="ROLLING_WINDOW", bucketDuration="1s"))
    hostile = {"user": "a}{b:c|d=e%", "long": "x" * 500}
    assert (await ask(handler, name, 1, hostile, deduplication_id="id with spaces {and braces}")).ok
    keys = [k.decode() async for k in rclient.scan_iter(match=f"quota:{{{name}*")]
    assert len(keys) == 2  # the counter and its deduplication record
    assert len({key_slot(k.encode()) for k in keys}) == 1
    for key in keys:
        assert len(key) < 200
        assert key.count("{") == 1 and key.count("}") == 1   # one hash tag; values are escaped or hashed
        assert 0 < await rclient.pttl(key) <= 61_000


async def test_a_flushed_script_is_reloaded_on_noscript(build, redis_server, rclient, unique):
    name = unique("noscript")
    handler = build(RedisQuotaAdapter, quota_params(redis_server.url, name, maxAmount=5, validDuration="1h"))
    await handler.start()
    assert (await rclient.script_exists(SHA)) == [True]
    await rclient.script_flush()
    assert (await ask(handler, name)).granted_amount == 1
    assert handler.limiter.stats["script_loads"] == 1
    assert (await rclient.script_exists(SHA)) == [True]
    assert (await ask(handler, name)).granted_amount == 1
    assert handler.limiter.stats["script_loads"] == 1


async def test_an_exhausted_counter_is_answered_locally_until_its_window_ends(build, redis_server, unique, fake_clock):
    name = unique("fast")
    handler = drive(build(RedisQuotaAdapter, quota_params(redis_server.url, name, maxAmount=2, validDuration="1s"),
                          fake_clock.clock), fake_clock)
    assert [(await ask(handler, name)).granted_amount for _ in range(3)] == [1, 1, 0]
    calls = handler.limiter.stats["redis_calls"]
    answers = [await ask(handler, name) for _ in range(20)]
    assert all(a.status.code == Code.RESOURCE_EXHAUSTED and a.granted_amount == 0 for a in answers)
    assert handler.limiter.stats["redis_calls"] == calls          # no Redis call
    assert handler.limiter.stats["fast_path"] == 20
    assert (await ask(handler, name, dims={"other": "1"})).granted_amount == 1   # other counters still go to Redis
    retried = await ask(handler, name, deduplication_id="x")      # dedup ids skip the fast path
    assert handler.limiter.stats["redis_calls"] == calls + 2 and retried.granted_amount == 0
    fake_clock.advance(1.0)
    assert (await ask(handler, name)).granted_amount == 1         # the next window is asked of Redis


async def test_unix_socket_and_mixer_host_port_urls(build, tmp_path, unique):
    server = RedisServer(unixsocket=str(tmp_path / "redis.sock")).start()
    try:
        name = unique("unix")
        for url in (f"unix://{tmp_path / 'redis.sock'}", f"127.0.0.1:{server.port}",
                    f"redis://127.0.0.1:{server.port}/0"):
            handler = build(RedisQuotaAdapter, quota_params(url, name, maxAmount=3, validDuration="1h"))
            assert (await ask(handler, name)).ok, url
        handler = build(RedisQuotaAdapter, quota_params(f"127.0.0.1:{server.port}", name, maxAmount=3,
                                                        validDuration="1h"))
        assert (await ask(handler, name)).granted_amount == 0      # all three URLs reached one server
    finally:
        server.stop()


@pytest.mark.parametrize("raw, field", [
    ({"redisServerUrl": ""}, "redisServerUrl"),
    ({"redisServerUrl": "http://localhost:6379"}, "redisServerUrl"),
    ({"redisServerUrl": "localhost"}, "redisServerUrl"),
    ({"redisServerUrl": "unix:///tmp/r.sock", "cluster": True}, "cluster"),
    ({"redisServerUrl": "localhost:6379", "connectionPoolSize": -1}, "connectionPoolSize"),
    ({"redisServerUrl": "localhost:6379", "keyPrefix": "a{b"}, "keyPrefix"),
    ({"redisServerUrl": "localhost:6379", "quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s",
                                                      "rateLimitAlgorithm": "ROLLING_WINDOW",
                                                      "bucketDuration": "2s"}]}, "quotas[0].bucketDuration"),
])
def test_bad_params_name_the_field(raw, field):
    params = parse_params(RedisQuotaAdapter.Params, raw)
    assert [e.field for e in RedisQuotaAdapter.validate(params)] == [field]


def test_tls_url_is_accepted():
    params = parse_params(RedisQuotaAdapter.Params, {"redisServerUrl": "rediss://user:pw@cache.local:6380/1"})
    assert list(RedisQuotaAdapter.validate(params)) == []
