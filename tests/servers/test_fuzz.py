"""Fault probe: seeded fuzzed requests to every served method — 0 crashes, 0 wrong allows, still SERVING.

Each method gets well-formed seeds (typical requests, oversized values, odd types)
and a bounded number of mutations of their bytes (bit flips, truncations,
insertions, duplicated chunks, random bytes); both Check APIs also get
well-formed requests built from odd values (bad escapes, huge strings, wrong
types for known attributes, unknown names, odd quotas). The config denies every check, so
any allowed Check (native or ext_authz) is a wrong allow. A crash is an answer of
UNKNOWN or INTERNAL, or an error logged with a traceback.
"""

from __future__ import annotations

import logging
import random
import textwrap

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from policy.servers.native_codec import attributes_to_proto
from policy.testing import ext_authz_request
from policy.v1 import policy_pb2

pytestmark = pytest.mark.slow

SEED = 20261129
MUTATIONS_PER_METHOD = 1000
STRUCTURED = 300  # well-formed requests with odd values, per Check API

POLICY = """
settings:
  rateLimit: {handler: counts}
handlers:
  - {name: counts, adapter: memquota, params: {quotas: []}}
  - {name: deny, adapter: denier, params: {status: {code: 7, message: everything is denied}}}
  - {name: log, adapter: stdio, params: {logStream: FILE, outputPath: "LOG"}}
instances:
  - {name: nothing, template: checknothing, params: {}}
  - name: entry
    template: logentry
    params:
      severity: '"info"'
      variables:
        path: request.path | ""
        user: request.headers["x-user"] | ""
        ip: source.ip | ip("0.0.0.0")
        kind: context.reporter.kind | ""
rules:
  - {name: deny-all, actions: [{handler: deny, instances: [nothing]}]}
  - {name: log, actions: [{handler: log, instances: [entry]}]}
"""

RLS = """
domain: shop
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: path
    rate_limit: {unit: second, requests_per_unit: 1000}
"""


def _native_seeds() -> list[bytes]:
    import ipaddress

    seeds = []
    for attrs in ({"request.path": "/a", "source.ip": ipaddress.ip_address("10.0.0.1"),
                   "request.headers": {"x-user": "alice", "authorization": "Bearer t"}},
                  {"request.path": "/" + "x" * 50_000, "request.size": 12},
                  {"request.headers": {f"h{i}": "v" * i for i in range(200)}}):
        request = policy_pb2.CheckRequest(attributes=attributes_to_proto(attrs), deduplication_id="d1")
        request.quotas["q"].amount = 3
        seeds.append(request.SerializeToString())
    return seeds


def _report_seeds() -> list[bytes]:
    return [policy_pb2.ReportRequest(attributes=[attributes_to_proto({"request.path": f"/r/{i}"})
                                                 for i in range(5)]).SerializeToString()]


def _ext_authz_seeds() -> list[bytes]:
    seeds = [ext_authz_request(path="/api?x=1", headers={"x-user": "bob", "authorization": "Bearer e30.e30.x"}),
             ext_authz_request(method="POST", path="/" + "%2e" * 5000, host="h" * 300),
             external_auth_pb2.CheckRequest()]
    return [s.SerializeToString() for s in seeds]


def _rls_seeds() -> list[bytes]:
    request = rls_pb2.RateLimitRequest(domain="shop", hits_addend=1)
    entry = request.descriptors.add().entries.add()
    entry.key, entry.value = "remote_address", "10.0.0.1"
    deep = rls_pb2.RateLimitRequest(domain="shop")
    for i in range(50):
        e = deep.descriptors.add().entries.add()
        e.key, e.value = "path", "/" * i
    return [request.SerializeToString(), deep.SerializeToString(), rls_pb2.RateLimitRequest().SerializeToString()]


def _accesslog_seeds() -> list[bytes]:
    message = als_pb2.StreamAccessLogsMessage()
    message.identifier.log_name = "fuzz"
    message.identifier.node.id = "sidecar~10.4.5.6~books-1.shop~shop.svc.cluster.local"
    entry = message.http_logs.log_entry.add()
    entry.request.path = "/logged"
    entry.request.request_headers["x-user"] = "carol"
    entry.common_properties.downstream_remote_address.socket_address.address = "10.1.2.3"
    entry.response.response_code.value = 200
    tcp = als_pb2.StreamAccessLogsMessage()
    tcp.tcp_logs.log_entry.add().connection_properties.received_bytes = 5
    return [message.SerializeToString(), tcp.SerializeToString()]


_ODD = ["", "\x00", "%zz", "%2e%2e/", "/../../etc", "?a=1&a=2&access_token=t", "#frag", "\u202e", "\ud7ff",
        "é" * 300, " " * 10, "a" * 70_000, "10.0.0.1", "::1", "999.1.1.1", "-1", "1e309", "null", "Bearer e30.e30."]


def _odd(rng: random.Random) -> str:
    return "".join(rng.choice(_ODD) for _ in range(rng.randint(1, 3)))


def _structured_native(rng: random.Random) -> bytes:
    import datetime as dt
    import ipaddress

    values = [lambda: _odd(rng), lambda: rng.randint(-2**63, 2**63 - 1), lambda: rng.random() * 1e308,
              lambda: rng.random() < 0.5, lambda: {_odd(rng)[:50]: _odd(rng) for _ in range(rng.randint(0, 20))},
              lambda: ipaddress.ip_address(rng.getrandbits(32)), lambda: dt.timedelta(seconds=rng.randint(0, 10**6)),
              lambda: rng.randbytes(rng.randint(0, 64))]
    names = ["request.path", "request.headers", "source.ip", "request.size", "request.auth.claims", "x.unknown",
             "request.time", "response.duration", "context.protocol", _odd(rng)[:40]]
    attrs = {}
    for _ in range(rng.randint(0, 8)):
        try:
            attrs[rng.choice(names)] = rng.choice(values)()
        except Exception:  # noqa: BLE001 — a value the client codec cannot encode is simply not sent
            continue
    try:
        request = policy_pb2.CheckRequest(attributes=attributes_to_proto(attrs),
                                          deduplication_id=_odd(rng)[:100])
    except Exception:  # noqa: BLE001
        request = policy_pb2.CheckRequest()
    for _ in range(rng.randint(0, 3)):
        request.quotas[_odd(rng)[:30]].amount = rng.randint(-5, 2**40)
    return request.SerializeToString()


def _structured_ext_authz(rng: random.Random) -> bytes:
    headers = {_odd(rng)[:60].lower() or "x": _odd(rng) for _ in range(rng.randint(0, 30))}
    try:
        request = ext_authz_request(method=rng.choice(["GET", "POST", "", "CONNECT", _odd(rng)[:20]]),
                                    path=_odd(rng), host=_odd(rng)[:300], headers=headers,
                                    source_ip=rng.choice(["10.0.0.1", "::1", "999.0.0.1", ""]),
                                    source_port=rng.randint(0, 65535))
    except Exception:  # noqa: BLE001
        request = external_auth_pb2.CheckRequest()
    return request.SerializeToString()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        if kind == 0 and out:
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            del out[rng.randrange(len(out)):]
        elif kind == 2:
            i = rng.randrange(len(out) + 1)
            out[i:i] = rng.randbytes(rng.randint(1, 32))
        elif kind == 3 and out:
            i = rng.randrange(len(out))
            j = min(len(out), i + rng.randint(1, 64))
            out[i:i] = out[i:j] * rng.randint(1, 4)
        elif kind == 4 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        else:
            out = bytearray(rng.randbytes(rng.randint(0, 200)))
    return bytes(out)


CRASHES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


@pytest.fixture
def fuzz_config(tmp_path):
    directory = tmp_path / "config"
    (directory / "ratelimit").mkdir(parents=True)
    (directory / "policy.yaml").write_text(POLICY.replace("LOG", str(tmp_path / "log.jsonl")))
    (directory / "ratelimit" / "shop.yaml").write_text(textwrap.dedent(RLS))
    return directory


async def test_fuzzed_requests_to_every_method(fuzz_config, policy_server_factory, caplog):
    caplog.set_level(logging.ERROR)
    running = await policy_server_factory(fuzz_config)
    channel = running.channel()
    rng = random.Random(SEED)
    outcomes: dict[str, dict[str, int]] = {}
    crashes: list[str] = []
    wrong_allows: list[str] = []

    def note(method: str, code: grpc.StatusCode, details: str = "") -> None:
        counts = outcomes.setdefault(method, {})
        counts[code.name] = counts.get(code.name, 0) + 1
        if code in CRASHES:
            crashes.append(f"{method}: {code.name}{details}")

    async def unary(method: str, seeds: list[bytes], allowed, mutations: int = MUTATIONS_PER_METHOD) -> None:
        call = channel.unary_unary(method)
        inputs = list(seeds) + [_mutate(rng, rng.choice(seeds)) for _ in range(mutations)]
        for data in inputs:
            try:
                reply = await call(data, timeout=30)
            except grpc.aio.AioRpcError as exc:
                note(method, exc.code())
                continue
            note(method, grpc.StatusCode.OK)
            if allowed is not None and allowed(reply):
                wrong_allows.append(f"{method}: {data[:80]!r}")

    def native_allowed(reply: bytes) -> bool:
        return policy_pb2.CheckResponse.FromString(reply).precondition.status.code == 0

    def ext_authz_allowed(reply: bytes) -> bool:
        return external_auth_pb2.CheckResponse.FromString(reply).status.code == 0

    await unary("/policy.v1.Policy/Check", _native_seeds(), native_allowed)
    structured = [_structured_native(rng) for _ in range(STRUCTURED)]
    await unary("/policy.v1.Policy/Check", structured, native_allowed, mutations=0)
    await unary("/policy.v1.Policy/Report", _report_seeds(), None)
    await unary("/envoy.service.auth.v3.Authorization/Check", _ext_authz_seeds(), ext_authz_allowed)
    structured = [_structured_ext_authz(rng) for _ in range(STRUCTURED)]
    await unary("/envoy.service.auth.v3.Authorization/Check", structured, ext_authz_allowed, mutations=0)
    await unary("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", _rls_seeds(), None)
    health_seeds = [health_pb2.HealthCheckRequest(service=s).SerializeToString()
                    for s in ("", "policy.v1.Policy", "x" * 1000)]
    await unary("/grpc.health.v1.Health/Check", health_seeds, None)

    als = channel.stream_unary("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs")
    seeds = _accesslog_seeds()
    for _ in range(MUTATIONS_PER_METHOD // 5):
        messages = [_mutate(rng, rng.choice(seeds)) if rng.random() < 0.7 else rng.choice(seeds)
                    for _ in range(rng.randint(1, 5))]
        try:
            await als(iter(messages), timeout=30)
            note("StreamAccessLogs", grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as exc:
            note("StreamAccessLogs", exc.code(), f" {exc.details()}")

    reflection = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    seeds = [reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString(),
             reflection_pb2.ServerReflectionRequest(file_containing_symbol="policy.v1.Policy").SerializeToString()]
    for _ in range(MUTATIONS_PER_METHOD // 5):
        call = reflection(iter([_mutate(rng, rng.choice(seeds)) for _ in range(rng.randint(1, 3))]), timeout=30)
        try:
            async for _reply in call:
                pass
            note("ServerReflectionInfo", grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as exc:
            note("ServerReflectionInfo", exc.code(), f" {exc.details()}")

    tracebacks = [r.getMessage()[:200] for r in caplog.records if r.exc_info]
    assert crashes == [], (crashes[:10], outcomes)
    assert tracebacks == [], tracebacks[:5]
    assert wrong_allows == [], wrong_allows[:5]
    assert sum(outcomes["/policy.v1.Policy/Check"].values()) == MUTATIONS_PER_METHOD + 3 + STRUCTURED
    assert outcomes["/policy.v1.Policy/Check"].get("OK", 0) >= STRUCTURED // 5   # decided, not just rejected
    health = await channel.unary_unary("/grpc.health.v1.Health/Check")(
        health_pb2.HealthCheckRequest(service="").SerializeToString(), timeout=10)
    assert health_pb2.HealthCheckResponse.FromString(health).status == health_pb2.HealthCheckResponse.SERVING
    assert await running.service.reports.drain(timeout=10)
