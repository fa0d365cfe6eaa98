"""Envoy rate limiting: ShouldRateLimit throughput against a no-op rate-limit server on the same stack.

h2load (or the Python client) with 64 requests in flight on one HTTP/2 connection sends one
serialized RateLimitRequest (domain ``bench``, one ``remote_address`` descriptor, 1,000,000 per
hour so it never goes over) to: the no-op server (grpc.aio answering a fixed response of the same
shape), ours counting in memquota, and ours counting in redisquota on a local redis-server. All
run at once; rounds alternate between them and a ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks._grpc_load import LoadResult, run_load
from benchmarks._stats import header, summarize_us, time_calls
from benchmarks._procs import cpu_seconds
from benchmarks.bench_envoy import _servers

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
RLS = """
domain: bench
descriptors:
  - key: remote_address
    rate_limit: {unit: hour, requests_per_unit: 1000000}
"""
POLICY = """
settings:
  rateLimit: {{handler: counts}}
handlers:
  - name: counts
    adapter: {adapter}
    params: {params}
"""


def typical_request() -> bytes:
    """A serialized RateLimitRequest as Envoy's rate-limit filter sends it for one remote_address action."""
    from envoy.service.ratelimit.v3 import rls_pb2

    request = rls_pb2.RateLimitRequest(domain="bench")
    entry = request.descriptors.add().entries.add()
    entry.key, entry.value = "remote_address", "10.1.2.3"
    return request.SerializeToString()


def _config(root: Path, name: str, adapter: str, params: str) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "policy.yaml").write_text(POLICY.format(adapter=adapter, params=params))
    (directory / "rls.yaml").write_text(RLS)
    return directory


def bench_in_process(quick: bool) -> None:
    """µs per ShouldRateLimit answer in process (translation, lookup, counting in memquota, response), no gRPC."""
    import asyncio

    from envoy.service.ratelimit.v3 import rls_pb2

    from adapters.memquota import MemQuotaAdapter
    from policy import BuildContext, Clock, parse_params
    from policy.config.ratelimit.limits import RateLimitSettings, compile_rate_limit
    from policy.runtime.ratelimit import decide
    from policy.servers.ratelimit import descriptors_from_request, response_from_decision

    header("ShouldRateLimit in process", "one descriptor, memquota, the same request each time (never over).")
    import yaml

    config = compile_rate_limit([("bench", yaml.safe_load(RLS))], parse_params(RateLimitSettings, {"handler": "h"}),
                                lambda *e: print("  config error", e))
    handler = MemQuotaAdapter.build(parse_params(MemQuotaAdapter.Params, {"quotas": []}),
                                    BuildContext(handler="h", config_dir=Path("."), clock=Clock()))
    request = rls_pb2.RateLimitRequest.FromString(typical_request())

    async def should_rate_limit() -> object:
        decision = await decide(config, handler, request.domain, descriptors_from_request(request),
                                request.hits_addend)
        return response_from_decision(request, decision)

    loop = asyncio.new_event_loop()
    try:
        samples = time_calls(lambda: loop.run_until_complete(should_rate_limit()),
                             2_000 if quick else 20_000)
    finally:
        loop.close()
    print(f"  should_rate_limit (memquota)   {summarize_us(samples)}   (includes one event-loop turn per call)")


def bench_throughput(quick: bool, configs: dict[str, Path]) -> None:
    """Throughput at 64 in flight over TCP: ours (memquota, redisquota) vs the no-op server."""
    rounds = 3 if quick else 5
    count = 3_000 if quick else 10_000
    header("ShouldRateLimit at 64 in flight", "one HTTP/2 connection, 64 concurrent streams, the same request; "
           f"{rounds} rounds alternating between the servers; ratio = median of the rounds' ratios.")
    request = typical_request()
    everyone: dict[str, Path | None] = {"no-op server": None, **configs}
    with tempfile.TemporaryDirectory() as tmp:
        stack, addresses, pids = _servers(everyone, "tcp", tmp)
        runs: dict[str, list[LoadResult]] = {label: [] for label in everyone}
        cpu: dict[str, list[float]] = {label: [] for label in everyone}
        with stack:
            for address in addresses.values():
                run_load(address, METHOD, request, requests=500, concurrency=16)  # warm up
            for _ in range(rounds):
                for label, address in addresses.items():
                    before = cpu_seconds(pids[label])
                    result = run_load(address, METHOD, request, requests=count, concurrency=64)
                    runs[label].append(result)
                    cpu[label].append((cpu_seconds(pids[label]) - before) / max(1, result.requests) * 1e6)
    median = {label: sorted(results, key=lambda r: r.rps)[len(results) // 2] for label, results in runs.items()}
    for label, result in median.items():
        print("  " + result.line(label) + f"  server CPU {statistics.median(cpu[label]):.0f} µs/request")
    for label in configs:
        ratios = sorted(r.rps / b.rps for r, b in zip(runs[label], runs["no-op server"]))
        print(f"  {label}: throughput {statistics.median(ratios):.2f} of no-op; rounds "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; CPU per request "
              f"{statistics.median(cpu[label]) / statistics.median(cpu['no-op server']):.2f}x no-op's")


def run(quick: bool = False) -> None:
    """Run the rate-limit benchmark (redisquota only when a redis-server can be started)."""
    from tests.quota.redis_procs import RedisServer

    bench_in_process(quick)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        configs = {"policy server (memquota)": _config(root, "mem", "memquota", "{quotas: []}")}
        server = None
        try:
            server = RedisServer().start()
        except Exception as exc:  # no redis-server binary: measure memquota only, and say so
            print(f"  (redisquota skipped: {type(exc).__name__}: {exc})")
        try:
            if server is not None:
                configs["policy server (redisquota)"] = _config(
                    root, "redis", "redisquota", f'{{redisServerUrl: "{server.url}", quotas: []}}')
            bench_throughput(quick, configs)
        finally:
            if server is not None:
                server.stop()
