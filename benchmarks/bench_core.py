"""Core: expression evaluation, in-process checks (cached and not), native gRPC Check vs a no-op server."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

from benchmarks._grpc_load import run_load
from benchmarks._procs import free_port, noop_server, policy_server
from benchmarks._requests import typical_attributes
from benchmarks._stats import header, summarize_us, time_calls
from benchmarks._summary import record

CONFIG = Path(__file__).parent / "configs" / "core"


def bench_expressions(quick: bool) -> None:
    """µs per evaluation of compiled expressions on a typical request."""
    from policy.attributes import AttributeBag, RecordingBag, standard_vocabulary
    from policy.expr import compile_expression

    header("expressions", "Compiled match expressions evaluated on a 15-attribute request (µs per evaluation).")
    vocabulary = standard_vocabulary()
    bag = AttributeBag(typical_attributes())
    count = 20_000 if quick else 200_000
    for text in (
        'request.method == "GET"',
        'destination.namespace == "shop" && request.headers["x-user"] == "alice"',
        'request.path.startsWith("/api") && !(source.principal | "").endsWith("/sa/admin")',
        'match(destination.service.host, "*.shop.svc.cluster.local") || source.ip == ip("10.1.2.3")',
    ):
        expr = compile_expression(text, vocabulary)
        plain = time_calls(lambda expr=expr: expr.evaluate(bag), count)
        recorded = time_calls(lambda expr=expr: expr.evaluate(RecordingBag(bag)), count)
        print(f"  {text}")
        print(f"    plain bag:     {summarize_us(plain)}")
        print(f"    recording bag: {summarize_us(recorded)}")


def bench_in_process(quick: bool) -> None:
    """µs per in-process check through the dispatcher, cached vs uncached."""
    from policy.attributes import AttributeBag
    from policy.runtime.service import PolicyService

    header("in-process check", "Dispatcher.check on the core config (IP whitelist + 2 header/path rules), "
           "awaited in a loop; cached = answered from the decision cache, with a new request.id each time; "
           "uncached = a source.ip never seen before each time (a full dispatch).")

    async def run() -> None:
        service = PolicyService(CONFIG, watch_interval=0)
        service.load()
        dispatcher = service.dispatcher
        count = 5_000 if quick else 50_000
        bags = [AttributeBag(typical_attributes(f"req-{i}")) for i in range(1000)]
        await dispatcher.check(bags[0])
        loop_samples: dict[str, list[float]] = {"cached": [], "uncached": []}
        perf = time.perf_counter
        deadline = time.monotonic() + 20
        for i in range(count):
            bag = bags[i % 1000]
            start = perf()
            decision = await dispatcher.check(bag)
            loop_samples["cached"].append(perf() - start)
            assert decision.allowed and decision.cache_hit
            if time.monotonic() > deadline:
                break
        import ipaddress

        fresh = []
        for i in range(count // 5):
            attributes = typical_attributes(f"new-{i}")
            attributes["source.ip"] = ipaddress.ip_address(0x0AC80000 + i)  # 10.200.0.0/16: never the cached 10.1.2.3
            fresh.append(AttributeBag(attributes))
        deadline = time.monotonic() + 20
        for bag in fresh:
            start = perf()
            decision = await dispatcher.check(bag)
            loop_samples["uncached"].append(perf() - start)
            assert decision.allowed and not decision.cache_hit
            if time.monotonic() > deadline:
                break
        stats = dispatcher.cache.snapshot_stats()
        await service.stop()
        for label, samples in loop_samples.items():
            print(f"  {label:<9} {summarize_us(samples)}   ({len(samples)} checks)")
        cached = sorted(loop_samples["cached"])[len(loop_samples["cached"]) // 2]
        uncached = sorted(loop_samples["uncached"])[len(loop_samples["uncached"]) // 2]
        print(f"  cache speed-up (median): {uncached / cached:.1f}x   cache shapes: {stats.shapes}")

    asyncio.run(run())


def bench_native_stages(quick: bool) -> None:
    """µs per stage of the native Check handler in process: decode, attributes, check, encode, all of it."""
    from policy.attributes import AttributeBag
    from policy.runtime.service import PolicyService
    from policy.servers.native import PolicyServicer, encode_response
    from policy.servers.native_codec import attributes_from_proto, attributes_to_proto
    from policy.servers.native_wire import WireDecoder
    from policy.servers.paths import DEFAULT_MODE, normalize_attributes
    from policy.v1 import policy_pb2

    header("native Check stages", "policy.v1.Policy/Check's handler in process on the typical request (µs per call): "
           "protobuf's decode and attributes_from_proto (the path a request the wire reader does not take goes), "
           "the wire reader (native_wire) on the same bytes each time and with a new request.id and request.time "
           "each time, "
           "the cached check, the response encoding, and the whole handler (wire reader, check, encode).")
    count = 5_000 if quick else 50_000

    def request(request_id: str, microseconds: int = 0) -> bytes:
        attributes = typical_attributes(request_id)
        attributes["request.time"] += dt.timedelta(microseconds=microseconds)
        return policy_pb2.CheckRequest(attributes=attributes_to_proto(attributes)).SerializeToString()

    async def run() -> None:
        service = PolicyService(CONFIG, watch_interval=0)
        service.load()
        vocabulary = service.host.vocabulary
        data = request("req-1")
        fresh = [request(f"req-{i}", i) for i in range(count)]  # each id and time once, as a sidecar sends them
        parse = policy_pb2.CheckRequest.FromString
        wire = WireDecoder(vocabulary, DEFAULT_MODE)
        values = wire.attributes(data)
        assert values == normalize_attributes(attributes_from_proto(parse(data).attributes, vocabulary), DEFAULT_MODE)
        decision = await service.check(AttributeBag.trusted(values), api="native")
        ids = iter(range(1 << 62))
        stages = {
            "protobuf decode + attributes_from_proto": lambda: attributes_from_proto(parse(data).attributes, vocabulary),
            "wire reader, same request": lambda: wire.attributes(data),
            "wire reader, new request.id and .time": lambda: wire.attributes(fresh[next(ids) % count]),
            "encode response (memo + id)": lambda: encode_response(decision),
        }
        for label, fn in stages.items():
            print(f"  {label:<42} {summarize_us(time_calls(fn, count))}")

        class Context:
            async def abort(self, code: object, details: str) -> None:
                raise AssertionError(details)

        servicer, context = PolicyServicer(service), Context()
        for label, call in (("cached check (service.check)",
                             lambda: service.check(AttributeBag.trusted(values), api="native")),
                            ("whole handler (PolicyServicer.Check)", lambda: servicer.Check(data, context))):
            samples = []
            perf = time.perf_counter
            for _ in range(count // 50):
                start = perf()
                for _ in range(50):
                    await call()
                samples.append((perf() - start) / 50)
            print(f"  {label:<42} {summarize_us(samples)}")
        await service.stop()

    asyncio.run(run())


def bench_native_grpc(quick: bool) -> None:
    """Native Check: server CPU per request and throughput, ours vs a no-op server on the same grpc stack."""
    import statistics

    from benchmarks._procs import cpu_seconds
    from policy.servers.native_codec import attributes_to_proto
    from policy.v1 import policy_pb2

    rounds = 3 if quick else 7
    count = 4_000 if quick else 12_000
    header("native gRPC Check", "policy.v1.Policy/Check over loopback TCP, 64 requests in flight on one HTTP/2 "
           "connection, the same serialized request to our server (decision cached after the first) and to a "
           f"no-op server answering a fixed response on the same grpc.aio stack; both run at once and {rounds} "
           "rounds alternate; server CPU per request from /proc.")
    request = policy_pb2.CheckRequest(attributes=attributes_to_proto(typical_attributes())).SerializeToString()
    method = "/policy.v1.Policy/Check"
    labels = ("no-op server", "policy server (cached)")
    addresses = {label: f"127.0.0.1:{free_port()}" for label in labels}
    rps: dict[str, list[float]] = {label: [] for label in labels}
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    with noop_server([addresses[labels[0]]]) as noop, policy_server(CONFIG, [addresses[labels[1]]]) as ours:
        pids = {labels[0]: noop.pid, labels[1]: ours.pid}
        for label in labels:
            run_load(addresses[label], method, request, requests=500, concurrency=16)  # warm up
        for round_ in range(rounds):
            for label in labels if round_ % 2 == 0 else labels[::-1]:  # neither always runs first
                before = cpu_seconds(pids[label])
                result = run_load(addresses[label], method, request, requests=count, concurrency=64)
                cpu[label].append((cpu_seconds(pids[label]) - before) / max(1, result.requests) * 1e6)
                rps[label].append(result.rps)
    for label in labels:
        print(f"  {label:<26} {statistics.median(rps[label]):7.0f} req/s   server CPU"
              f" {statistics.median(cpu[label]):.0f} µs/request")
    ratios = sorted(o / n for o, n in zip(cpu[labels[1]], cpu[labels[0]]))
    throughput = statistics.median(o / n for o, n in zip(rps[labels[1]], rps[labels[0]]))
    print(f"  CPU per request ours/no-op: {statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)});"
          f" throughput {throughput:.2f} of no-op (target CPU <= 1.10x)")
    record("native Check cached [tcp]: CPU/request <= 1.10x no-op",
           f"{statistics.median(ratios):.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}; throughput {throughput:.2f})",
           statistics.median(ratios) <= 1.10)


def run(quick: bool = False) -> None:
    """Run every core benchmark."""
    bench_expressions(quick)
    bench_in_process(quick)
    bench_native_stages(quick)
    bench_native_grpc(quick)
