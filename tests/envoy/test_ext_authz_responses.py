"""ext_authz v3: every response field, through a real server with Envoy's generated stub."""

from __future__ import annotations

import uuid

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format

from policy.servers.ext_authz import MAX_REQUEST_BYTES, SERVICE_NAME
from tests.envoy.conftest import VIA, authz, check_request, headers_of

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD

CONFIG = """
handlers:
  - name: internal
    adapter: listchecker
    params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"], cachingInterval: 60s, cachingUseCount: 100}
  - name: tagger
    adapter: shaper
    params:
      appendRequestHeaders: {x-tag: from-adapter}
      responseHeaders: {x-served-by: policy}
      metadata: {tier: gold}
  - name: no-token
    adapter: shaper
    params: {code: UNAUTHENTICATED, message: token missing, responseHeaders: {www-authenticate: Bearer}}
  - name: teapot
    adapter: shaper
    params: {code: PERMISSION_DENIED, message: not today, httpStatus: 418, body: "<h1>no</h1>"}
  - name: blocked
    adapter: denier
    params: {status: {code: 7, message: mallory is blocked}, validDuration: 10s}
  - name: broken
    adapter: shaper
    params: {code: PERMISSION_DENIED, httpStatus: 99999999999}
instances:
  - {name: source-ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
  - {name: nothing, template: checknothing, params: {}}
rules:
  - name: internal-only
    actions: [{handler: internal, instances: [source-ip]}]
    requestHeaderOperations:
      - {name: x-checked, values: ['"yes"']}
      - {name: x-user, values: ['request.headers["x-user"] | "anonymous"']}
      - {name: authorization, operation: REMOVE}
    responseHeaderOperations:
      - {name: x-policy, values: ['"on"']}
      - {name: server, operation: REMOVE}
  - name: tag-api
    match: request.url_path.startsWith("/api")
    actions: [{handler: tagger, instances: [nothing]}]
  - name: need-token
    match: request.url_path == "/private"
    actions: [{handler: no-token, instances: [nothing]}]
  - name: teapot
    match: request.url_path == "/tea"
    actions: [{handler: teapot, instances: [nothing]}]
  - name: block-mallory
    match: request.headers["x-user"] == "mallory"
    actions: [{handler: blocked, instances: [nothing]}]
  - name: broken
    match: request.url_path == "/broken"
    actions: [{handler: broken, instances: [nothing]}]
"""


@pytest.fixture
async def server(envoy_server):
    return await envoy_server(CONFIG)


def metadata(response) -> dict:
    return json_format.MessageToDict(response.dynamic_metadata)


@VIA
async def test_allowed_carries_header_operations_and_metadata(server, via):
    response = await authz(server, via).Check(check_request(path="/api/books", headers={"x-user": "alice"}))
    assert response.status.code == 0
    assert response.WhichOneof("http_response") == "ok_response"
    ok = response.ok_response
    assert headers_of(ok.headers) == {
        "x-checked": ("yes", OVERWRITE), "x-user": ("alice", OVERWRITE), "x-tag": ("from-adapter", APPEND)}
    assert list(ok.headers_to_remove) == ["authorization"]
    # ext_authz v3 cannot remove a response header: only the additions are sent.
    assert headers_of(ok.response_headers_to_add) == {"x-policy": ("on", OVERWRITE),
                                                       "x-served-by": ("policy", OVERWRITE)}
    meta = metadata(response)
    # The adapters' metadata and the decision id, nothing else (OPA-Envoy's dynamic_metadata): the
    # matched rules are in the decision log (check.rules), not sent to Envoy.
    assert meta.pop("tier") == "gold"
    assert str(uuid.UUID(meta.pop("decision_id"))).count("-") == 4
    assert meta == {}


@VIA
async def test_each_response_has_its_own_decision_id_even_from_cache(server, via):
    stub = authz(server, via)
    first = await stub.Check(check_request(request_id="a"))
    second = await stub.Check(check_request(request_id="b"))
    assert server.service.dispatcher.cache.stats.hits >= 1
    ids = [metadata(r)["decision_id"] for r in (first, second)]
    assert ids[0] != ids[1]
    # The cached response is the same apart from the id.
    assert headers_of(first.ok_response.headers) == headers_of(second.ok_response.headers)
    assert {k: v for k, v in metadata(first).items() if k != "decision_id"} == {
        k: v for k, v in metadata(second).items() if k != "decision_id"}


@VIA
async def test_denied_by_list_is_403_with_code_and_message_body(server, via):
    response = await authz(server, via).Check(check_request(source=("192.168.9.9", 1000), path="/"))
    assert response.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert "192.168.9.9" in response.status.message and response.status.message.startswith("internal")
    denied = response.denied_response
    assert denied.status.code == 403
    assert denied.body == f"PERMISSION_DENIED:{response.status.message}"
    # Mixer's dispatcher applies the rules' header operations to allowed requests only.
    assert headers_of(denied.headers) == {}
    assert list(metadata(response)) == ["decision_id"]


@VIA
async def test_unauthenticated_is_401_with_the_adapters_response_headers(server, via):
    response = await authz(server, via).Check(check_request(path="/private"))
    assert response.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert response.denied_response.status.code == 401
    assert response.denied_response.body == "UNAUTHENTICATED:no-token: token missing"
    assert headers_of(response.denied_response.headers)["www-authenticate"] == ("Bearer", OVERWRITE)


@VIA
async def test_decision_http_status_and_body_win_over_the_mapping(server, via):
    response = await authz(server, via).Check(check_request(path="/tea"))
    assert response.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert response.denied_response.status.code == 418
    assert response.denied_response.body == "<h1>no</h1>"


@VIA
async def test_denier_status_from_mixer_config(server, via):
    response = await authz(server, via).Check(check_request(headers={"x-user": "mallory"}, path="/"))
    assert response.status.code == 7
    assert response.denied_response.status.code == 403
    assert response.denied_response.body == "PERMISSION_DENIED:blocked: mallory is blocked"
    assert "matched_rules" not in metadata(response)


@VIA
async def test_malformed_request_is_invalid_argument_and_server_keeps_serving(server, via):
    channel = server.channel(server.tcp if via == "tcp" else server.unix)
    raw = channel.unary_unary(f"/{SERVICE_NAME}/Check", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "envoy.service.auth.v3.CheckRequest" in info.value.details()
    bad_ip = check_request(source=("not-an-ip", 1))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await authz(server, via).Check(bad_ip)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "attributes.source.address.socket_address.address" in info.value.details()
    assert "not-an-ip" in info.value.details()
    ok = await authz(server, via).Check(check_request())
    assert ok.status.code == 0


@VIA
async def test_oversized_requests_are_answered(server, via):
    stub = authz(server, via)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Check(check_request(body="x" * (MAX_REQUEST_BYTES + 10)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:  # above grpc's own message limit
        await stub.Check(check_request(body="x" * (5 * 1024 * 1024)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await stub.Check(check_request())).status.code == 0


@VIA
async def test_internal_failure_is_a_grpc_error_for_envoys_failure_mode(server, via):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await authz(server, via).Check(check_request(path="/broken"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "policy check failed" in info.value.details()
    assert (await authz(server, via).Check(check_request())).status.code == 0


async def test_requests_differing_only_in_volatile_attributes_share_a_cache_entry(server):
    stub = authz(server, "tcp")
    cache = server.service.dispatcher.cache
    await stub.Check(check_request(request_id="one", time=1_700_000_000))
    hits = cache.stats.hits
    for i in range(5):
        await stub.Check(check_request(request_id=f"r{i}", time=1_700_000_000 + i, source=("10.1.2.3", 2000 + i)))
    assert cache.stats.hits == hits + 5


async def test_ext_authz_is_served_with_health_and_reflection(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(server.channel(server.unix))
    answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert SERVICE_NAME in server.server.services
    assert "envoy.service.accesslog.v3.AccessLogService" in server.server.services
    assert external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name == SERVICE_NAME
