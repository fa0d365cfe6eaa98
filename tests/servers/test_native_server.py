"""The native policy.v1 API end to end: a real server on TCP and a Unix socket, the generated client."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from policy.testing import native_check
from policy.v1 import policy_pb2

CONFIG = """
handlers:
  - name: internal
    adapter: listchecker
    params:
      entryType: IP_ADDRESSES
      overrides: ["10.0.0.0/8", "fd00::/8"]
      cachingInterval: 120s
      cachingUseCount: 50
  - name: blocked
    adapter: denier
    params: {status: {code: 7, message: mallory is blocked}, validDuration: 10s, validUseCount: 5}
  - name: log
    adapter: stdio
    params: {logStream: FILE, outputPath: "{log}"}
instances:
  - {name: source-ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
  - {name: nothing, template: checknothing, params: {}}
  - name: access
    template: logentry
    params:
      severity: '"info"'
      variables: {path: 'request.path | ""', user: 'request.headers["x-user"] | ""'}
rules:
  - name: internal-only
    actions: [{handler: internal, instances: [source-ip]}]
    requestHeaderOperations:
      - {name: x-checked-by, values: ['"policy"']}
      - {name: x-user, values: ['request.headers["x-user"] | "anonymous"']}
    responseHeaderOperations:
      - {name: x-internal, operation: REMOVE}
  - name: block-mallory
    match: request.headers["x-user"] == "mallory"
    actions: [{handler: blocked, instances: [nothing]}]
  - name: log-all
    actions: [{handler: log, instances: [access]}]
"""


@pytest.fixture
async def server(policy_config, policy_server_factory, tmp_path):
    log = tmp_path / "access.log"
    config = policy_config(CONFIG.replace("{log}", str(log)))
    running = await policy_server_factory(config)
    running.log_path = log
    return running


def _codes(response):
    return response.precondition.status.code, response.precondition.status.message


@pytest.mark.parametrize("via", ["tcp", "unix"])
async def test_allowed_and_denied_over_tcp_and_unix(server, via):
    stub = server.native(server.tcp if via == "tcp" else server.unix)
    allowed = await native_check(stub, {"source.ip": ipaddress.ip_address("10.1.2.3"), "request.id": "r1"})
    assert _codes(allowed) == (0, "")
    assert list(allowed.matched_rules) == ["internal-only"]
    assert allowed.precondition.valid_duration.seconds == 120
    assert allowed.precondition.valid_use_count == 50
    assert allowed.decision_id

    outside = await native_check(stub, {"source.ip": ipaddress.ip_address("192.168.1.1")})
    code, message = _codes(outside)
    assert code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert message.startswith("internal:") and "192.168.1.1" in message

    mallory = await native_check(stub, {"source.ip": ipaddress.ip_address("fd00::1"),
                                        "request.headers": {"x-user": "mallory"}})
    assert _codes(mallory) == (7, "blocked: mallory is blocked")
    assert mallory.precondition.valid_duration.seconds == 10
    assert mallory.precondition.valid_use_count == 5


async def test_referenced_attributes_and_header_operations(server):
    response = await native_check(server.native(), {"source.ip": ipaddress.ip_address("10.0.0.9"),
                                                    "request.headers": {"x-user": "ann", "x-trace": "t"}})
    matches = {(m.name, m.map_key): m.condition for m in response.precondition.referenced_attributes.attribute_matches}
    exact, absent = policy_pb2.ReferencedAttributes.EXACT, policy_pb2.ReferencedAttributes.ABSENCE
    assert matches[("source.ip", "")] == exact
    assert matches[("request.headers", "x-user")] == exact
    assert ("request.headers", "x-trace") not in matches
    directive = response.precondition.route_directive
    ops = [(h.name, h.value, h.operation) for h in directive.request_header_operations]
    assert ops == [("x-checked-by", "policy", policy_pb2.HeaderOperation.REPLACE),
                   ("x-user", "ann", policy_pb2.HeaderOperation.REPLACE)]
    assert [(h.name, h.operation) for h in directive.response_header_operations] == [
        ("x-internal", policy_pb2.HeaderOperation.REMOVE)]

    anonymous = await native_check(server.native(), {"source.ip": ipaddress.ip_address("10.0.0.9")})
    matches = {(m.name, m.map_key): m.condition
               for m in anonymous.precondition.referenced_attributes.attribute_matches}
    # No headers at all: the map itself is reported absent (as Mixer's bag did), not the key:
    # "map without the key" reads "" and can decide differently from "no map".
    assert matches[("request.headers", "")] == absent
    assert ("request.headers", "x-user") not in matches


async def test_repeated_requests_are_answered_from_the_cache(server):
    stub = server.native()
    dispatcher = server.service.dispatcher
    for i in range(5):
        await native_check(stub, {"source.ip": ipaddress.ip_address("10.1.1.1"), "request.id": f"id-{i}"})
    assert dispatcher.cache.stats.hits == 4
    assert dispatcher.cache.stats.misses == 1


async def test_malformed_requests_get_invalid_argument_and_the_server_lives_on(server):
    stub = server.native()
    bad_ip = policy_pb2.CheckRequest()
    bad_ip.attributes.values["source.ip"].ip_address_value = b"\x01\x02\x03"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Check(bad_ip)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source.ip" in err.value.details()

    wrong_type = policy_pb2.CheckRequest()
    wrong_type.attributes.values["request.size"].string_value = "big"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Check(wrong_type)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request.size" in err.value.details()

    garbage = server.channel().unary_unary("/policy.v1.Policy/Check",
                                           request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await garbage(b"\xff\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    still = await native_check(stub, {"source.ip": ipaddress.ip_address("10.1.2.3")})
    assert still.precondition.status.code == 0


async def test_report_reaches_the_stdio_adapter(server):
    from policy.servers.native_codec import attributes_to_proto

    request = policy_pb2.ReportRequest(attributes=[
        attributes_to_proto({"request.path": f"/r/{i}", "request.headers": {"x-user": "u"}}) for i in range(3)])
    await server.native().Report(request)
    assert await server.service.reports.drain(timeout=5)
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    assert [line["variables"]["path"] for line in lines][-3:] == ["/r/0", "/r/1", "/r/2"]


async def test_health_and_reflection(server):
    health = health_pb2_grpc.HealthStub(server.channel(server.unix))
    reply = await health.Check(health_pb2.HealthCheckRequest(service="policy.v1.Policy"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel())

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(requests()):
        names = {s.name for s in response.list_services_response.service}
        break
    assert {"policy.v1.Policy", "grpc.health.v1.Health"} <= names


async def test_an_unknown_method_is_unimplemented_and_every_call_is_counted(server):
    # The method router is the server's one generic handler: it finds our methods and the
    # libraries' (health above), counts each call for the drain, and leaves the rest to grpc.
    router = server.server._calls
    before = router.started
    call = server.channel().unary_unary("/policy.v1.Policy/NoSuchMethod", request_serializer=None,
                                        response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    await native_check(server.native(), {"source.ip": ipaddress.ip_address("10.1.2.3")})
    assert router.started == before + 2
    assert "/policy.v1.Policy/NoSuchMethod" not in router.handlers  # unknown names are not remembered


async def test_quotas_without_a_charging_rule_are_granted(server):
    response = await native_check(server.native(), {"source.ip": ipaddress.ip_address("10.1.2.3")},
                                  quotas={"requests": 3})
    assert response.quotas["requests"].granted_amount == 3
    assert response.quotas["requests"].status.code == 0


async def test_a_quota_with_a_negative_amount_is_invalid(server):
    request = policy_pb2.CheckRequest()
    request.quotas["q"].amount = -1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.native().Check(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_many_concurrent_checks_all_answered(server):
    stub = server.native(server.unix)
    responses = await asyncio.gather(*(
        native_check(stub, {"source.ip": ipaddress.ip_address(f"10.0.{i // 250}.{i % 250}")}) for i in range(300)))
    assert all(r.precondition.status.code == 0 for r in responses)


async def test_cached_responses_carry_their_own_decision_id_and_quotas(server):
    stub = server.native()
    attrs = {"source.ip": ipaddress.ip_address("10.7.7.7")}
    first = await native_check(stub, attrs)
    second = await native_check(stub, attrs, quotas={"q": 2})
    assert first.decision_id != second.decision_id
    assert first.precondition == second.precondition
    assert second.quotas["q"].granted_amount == 2 and "q" not in first.quotas
