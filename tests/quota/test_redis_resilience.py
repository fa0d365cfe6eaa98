"""redisquota when Redis goes away: fail modes, never RESOURCE_EXHAUSTED for an outage, recovery without restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally

from adapters.redisquota import RedisQuotaAdapter
from policy import Code, Quota, QuotaArgs
from policy.testing.harness import native_check


def params(url, fail_mode):
    return {"redisServerUrl": url, "failMode": fail_mode, "timeout": "200ms", "retryInterval": "100ms",
            "quotas": [{"name": "q", "maxAmount": 1000, "validDuration": "1h"}]}


async def ask(handler):
    return await handler.quota(Quota("q", {}), QuotaArgs("q", 1))


async def until_ok(handler, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await ask(handler)
        if result.ok and result.granted_amount == 1:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("redisquota did not recover")


async def test_fail_modes_while_redis_is_down_and_recovery_after_restart(build, private_redis):
    closed = build(RedisQuotaAdapter, params(private_redis.url, "CLOSED"))
    opened = build(RedisQuotaAdapter, params(private_redis.url, "OPEN"))
    await closed.start()
    assert (await ask(closed)).granted_amount == 1 and (await ask(opened)).granted_amount == 1
    private_redis.kill()
    down = [await ask(closed) for _ in range(5)]
    assert all(r.status.code == Code.UNAVAILABLE and r.granted_amount == 0 for r in down)
    granted = [await ask(opened) for _ in range(5)]
    assert all(r.ok and r.granted_amount == 1 and r.valid_duration == 0 for r in granted)
    assert closed.stats["fail_closed"] == 5 and opened.stats["fail_open"] == 5
    assert closed.limiter.stats["errors"] >= 1 and closed.limiter.stats["short_circuited"] >= 1
    private_redis.start()                              # same port, empty: no script, no counters
    await until_ok(closed)
    await until_ok(opened)
    assert closed.limiter.stats["recoveries"] == 1 and closed.limiter.stats["script_loads"] == 1
    # start() found Redis down? It must not fail a config load either.
    private_redis.kill()
    await build(RedisQuotaAdapter, params(private_redis.url, "CLOSED")).start()


CONFIG = """
handlers:
  - name: shared
    adapter: redisquota
    params:
      redisServerUrl: {url}
      timeout: 200ms
      retryInterval: 100ms
      quotas: [{{name: requests, maxAmount: 1000000, validDuration: 1h}}]
instances:
  - {{name: requests, template: quota, params: {{dimensions: {{}}}}}}
rules:
  - {{name: charge, actions: [{{handler: shared, instances: [requests]}}]}}
"""


async def test_killed_mid_run_a_server_answers_unavailable_then_recovers_by_itself(
        private_redis, policy_config, policy_server_factory):
    running = await policy_server_factory(policy_config(CONFIG.format(url=private_redis.url)))
    stub = running.native()
    seen: Tally = Tally()
    stop = asyncio.Event()

    async def load():
        for _ in range(50000):  # bounded; ends when the test sets stop
            if stop.is_set():
                return
            response = await native_check(stub, {"request.path": "/"}, {"requests": 1})
            seen[Code(response.quotas["requests"].status.code).name] += 1
            await asyncio.sleep(0.005)

    async def until(what: str, predicate) -> None:   # on the answers seen, bounded; no timed windows
        deadline = time.monotonic() + 60
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {dict(seen)}"
            assert not any(t.done() for t in tasks), f"a load task ended early: {dict(seen)}"
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(load()) for _ in range(8)]
    await until("checks charged in Redis", lambda: seen["OK"] >= 8)
    private_redis.kill()
    await until("the fail mode to answer", lambda: seen["UNAVAILABLE"] >= 8)  # failMode CLOSED
    private_redis.start()
    ok_before_restart = seen["OK"]
    await until("charging in Redis again", lambda: seen["OK"] > ok_before_restart + 8)  # no restart of ours
    stop.set()
    await asyncio.gather(*tasks)
    assert seen["RESOURCE_EXHAUSTED"] == 0               # never mistaken for an exhausted quota
    assert set(seen) <= {"OK", "UNAVAILABLE"}
