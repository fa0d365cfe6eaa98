"""ShouldRateLimit through a real server and Envoy's client stub: every config and request feature."""

from __future__ import annotations

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

OK, OVER = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT
Unit = rls_pb2.RateLimitResponse.RateLimit.Unit


def descriptor(*entries, hits=None, limit=None):
    d = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries])
    if hits is not None:
        d.hits_addend.value = hits
    if limit is not None:
        d.limit.requests_per_unit, d.limit.unit = limit
    return d


def request(*descriptors, domain="shop", hits=0):
    return rls_pb2.RateLimitRequest(domain=domain, descriptors=list(descriptors), hits_addend=hits)


@pytest.fixture
async def server(rls_config, policy_server_factory):
    return await policy_server_factory(rls_config())


@pytest.fixture
def stub(server, rls_stub):
    return rls_stub(server)


async def test_a_limit_grants_its_requests_per_unit_then_is_over_limit(stub, server):
    answers = [await stub.ShouldRateLimit(request(descriptor(("remote_address", "10.0.0.1")))) for _ in range(4)]
    assert [a.overall_code for a in answers] == [OK, OK, OK, OVER]
    status = answers[0].statuses[0]
    assert status.current_limit.requests_per_unit == 3 and status.current_limit.unit == Unit.MINUTE
    assert [a.statuses[0].limit_remaining for a in answers] == [2, 1, 0, 0]
    assert 0 < status.duration_until_reset.ToMilliseconds() <= 60_000
    other = await stub.ShouldRateLimit(request(descriptor(("remote_address", "10.0.0.2"))))
    assert other.overall_code == OK                                   # one counter per value
    stats = server.service.snapshot.rate_limit.stats
    assert stats["over_limit"] == 1 and stats["shop.remote_address.over_limit"] == 1


async def test_wildcard_values_match_by_prefix_and_count_each_value(stub):
    for path in ("/api/books", "/api/authors"):
        codes = [(await stub.ShouldRateLimit(request(descriptor(("path", path))))).overall_code for _ in range(3)]
        assert codes == [OK, OK, OVER]
    fallback = await stub.ShouldRateLimit(request(descriptor(("path", "/other"))))
    assert fallback.statuses[0].current_limit.requests_per_unit == 1000   # key-only default


async def test_unlimited_nested_and_depth_mismatch(stub):
    health = await stub.ShouldRateLimit(request(descriptor(("path", "/health"))))
    assert health.statuses[0].code == OK and health.statuses[0].limit_remaining == 2 ** 32 - 1
    assert not health.statuses[0].HasField("current_limit")
    nested = [await stub.ShouldRateLimit(request(descriptor(("tenant", "acme"), ("user", "u1")))) for _ in range(3)]
    assert [n.overall_code for n in nested] == [OK, OK, OVER]
    assert nested[0].statuses[0].current_limit.unit == Unit.DAY
    shallow = await stub.ShouldRateLimit(request(descriptor(("tenant", "acme"))))    # no limit at that level
    deeper = await stub.ShouldRateLimit(request(descriptor(("tenant", "acme"), ("user", "u1"), ("x", "y"))))
    unknown = await stub.ShouldRateLimit(request(descriptor(("k", "v")), domain="elsewhere"))
    for answer in (shallow, deeper, unknown):
        assert answer.overall_code == OK and not answer.statuses[0].HasField("current_limit")


async def test_replaces_drops_the_named_limit_when_both_match(stub):
    both = request(descriptor(("path", "/api/x")), descriptor(("bulk", "job")))
    first = await stub.ShouldRateLimit(both)
    assert not first.statuses[0].HasField("current_limit")           # 'api' replaced by 'bulk'
    assert first.statuses[1].current_limit.requests_per_unit == 1
    assert (await stub.ShouldRateLimit(request(descriptor(("path", "/api/x"))))).statuses[0].limit_remaining == 1


async def test_hits_addend_request_and_descriptor_level_and_a_zero_read(stub):
    big = await stub.ShouldRateLimit(request(descriptor(("remote_address", "h1")), hits=2))
    assert big.statuses[0].limit_remaining == 1
    too_many = await stub.ShouldRateLimit(request(descriptor(("remote_address", "h1")), hits=2))
    assert too_many.overall_code == OVER and too_many.statuses[0].limit_remaining == 0   # charged: 4 of 3
    read = await stub.ShouldRateLimit(request(descriptor(("remote_address", "h1"), hits=0), hits=5))
    assert read.overall_code == OVER and read.statuses[0].limit_remaining == 0           # a read stays over
    fresh = await stub.ShouldRateLimit(request(descriptor(("remote_address", "h2"), hits=0), hits=5))
    assert fresh.overall_code == OK and fresh.statuses[0].limit_remaining == 3
    own = await stub.ShouldRateLimit(request(descriptor(("remote_address", "h2"), hits=1), hits=5))
    assert own.overall_code == OK and own.statuses[0].limit_remaining == 2


async def test_a_descriptors_own_limit_overrides_the_config(stub):
    answers = [await stub.ShouldRateLimit(request(descriptor(("anything", "x"), limit=(2, Unit.SECOND))))
               for _ in range(3)]
    assert [a.overall_code for a in answers] in ([OK, OK, OVER], [OK, OK, OK])   # OK x3 only across a second
    assert answers[0].statuses[0].current_limit.requests_per_unit == 2
    assert answers[0].statuses[0].current_limit.unit == Unit.SECOND
    elsewhere = await stub.ShouldRateLimit(request(descriptor(("a", "x"), limit=(0, Unit.HOUR)), domain="other"))
    assert elsewhere.overall_code == OK and not elsewhere.statuses[0].HasField("current_limit")  # unknown domain


async def test_every_matched_counter_is_charged_also_on_a_rejected_request(stub):
    await stub.ShouldRateLimit(request(descriptor(("bulk", "b"))))
    mixed = await stub.ShouldRateLimit(request(descriptor(("remote_address", "m1")), descriptor(("bulk", "b"))))
    assert [s.code for s in mixed.statuses] == [OK, OVER] and mixed.overall_code == OVER
    assert [s.limit_remaining for s in mixed.statuses] == [2, 0]
    alone = await stub.ShouldRateLimit(request(descriptor(("remote_address", "m1"))))
    assert alone.statuses[0].limit_remaining == 1                    # the rejected request charged it too


async def test_shadow_mode_answers_ok_and_counts(stub, server):
    answers = [await stub.ShouldRateLimit(request(descriptor(("trial", "t")))) for _ in range(3)]
    assert [a.overall_code for a in answers] == [OK, OK, OK]
    assert [a.statuses[0].code for a in answers] == [OK, OK, OK]
    assert server.service.snapshot.rate_limit.stats["shadow_mode"] == 2


async def test_global_shadow_mode_and_response_headers(rls_config, policy_server_factory, rls_stub):
    running = await policy_server_factory(rls_config(headers=True, shadow=True))
    stub = rls_stub(running)
    answers = [await stub.ShouldRateLimit(request(descriptor(("remote_address", "g")), descriptor(("path", "/x"))))
               for _ in range(4)]
    assert all(a.overall_code == OK for a in answers)
    assert answers[3].statuses[0].code == OVER                         # the descriptor still says so
    assert running.service.snapshot.rate_limit.stats["global_shadow_mode"] == 1
    headers = {h.key: h.value for h in answers[1].response_headers_to_add}
    assert headers["RateLimit-Limit"] == "3" and headers["RateLimit-Remaining"] == "1"
    assert 0 < int(headers["RateLimit-Reset"]) <= 60


async def test_malformed_requests_are_answered_and_the_server_keeps_serving(stub, server):
    for bad in (request(descriptor(("a", "b")), domain=""), request(),
                request(descriptor(("a", "b"), limit=(5, Unit.UNKNOWN)))):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ShouldRateLimit(bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    raw = server.channel().unary_unary("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\xff\xff\xff not protobuf")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = await stub.ShouldRateLimit(request(descriptor(("remote_address", "after"))))
    assert ok.overall_code == OK


async def test_without_settings_the_service_answers_failed_precondition(rls_config, policy_server_factory,
                                                                         rls_stub):
    running = await policy_server_factory(rls_config(settings=False))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rls_stub(running).ShouldRateLimit(request(descriptor(("a", "b"))))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_health_answers_for_ratelimit_as_the_reference_registers_it(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(server.channel())
    for name in ("ratelimit", "envoy.service.ratelimit.v3.RateLimitService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health.Check(health_pb2.HealthCheckRequest(service="ratelimitx"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_per_key_statistics_are_exported_and_bounded(stub, server, monkeypatch):
    from policy.config.ratelimit import stats

    for _ in range(4):
        await stub.ShouldRateLimit(request(descriptor(("remote_address", "10.1.1.1"))))
    text = server.service.telemetry.render()
    assert 'policy_ratelimit_total_hits_total{key="shop.remote_address"} 4.0' in text
    assert 'policy_ratelimit_over_limit_total{key="shop.remote_address"} 1.0' in text
    assert 'policy_ratelimit_within_limit_total{key="shop.remote_address"} 3.0' in text
    # Request values never make series of their own beyond the bound (a descriptor's own limit here).
    monkeypatch.setattr(stats, "MAX_DYNAMIC_KEYS", 3)
    for i in range(10):
        await stub.ShouldRateLimit(request(descriptor(("anything", f"v{i}"), limit=(100, Unit.HOUR))))
    keys = set(server.service.snapshot.rate_limit.statistics.by_key)
    assert len([k for k in keys if k.startswith("shop.anything_")]) <= 3
    assert server.service.snapshot.rate_limit.stats["shop.request_limit.total_hits"] >= 7
