"""Access-log service v3: Envoy's HTTP and TCP entries reach report adapters through a real server."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2

from policy.servers.accesslog import SERVICE_NAME
from tests.envoy.conftest import VIA, accesslog, authz, check_request, handler

VARIABLES = {
    "source_ip": "source.ip", "source_port": "source.port", "source_principal": "source.principal",
    "source_namespace": "source.namespace", "destination_ip": "destination.ip",
    "destination_port": "destination.port", "destination_principal": "destination.principal",
    "mtls": "connection.mtls", "sni": "connection.requested_server_name",
    "method": "request.method", "scheme": "request.scheme", "host": "request.host", "path": "request.path",
    "url_path": "request.url_path", "query_page": 'request.query_params["page"]', "agent": "request.useragent",
    "referer": "request.referer", "request_id": "request.id", "header_user": 'request.headers["x-user"]',
    "request_size": "request.size", "request_total_size": "request.total_size", "request_time": "request.time",
    "code": "response.code", "response_size": "response.size", "response_total_size": "response.total_size",
    "response_type": 'response.headers["content-type"]', "duration": "response.duration",
    "response_time": "response.time", "grpc_status": "response.grpc_status", "protocol": "context.protocol",
    "received": "connection.received.bytes", "sent": "connection.sent.bytes",
    "connection_duration": "connection.duration", "event": "connection.event", "context_time": "context.time",
}

CONFIG = """
handlers:
  - {name: recorder, adapter: recorder, params: {hold: HOLD}}
  - name: internal
    adapter: listchecker
    params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"], cachingInterval: 60s}
instances:
  - {name: source-ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
  - name: access
    template: logentry
    params:
      severity: '"info"'
      variables:
""" + "".join(f"        {name}: '{expr}'\n" for name, expr in VARIABLES.items()) + """
rules:
  - name: internal-only
    actions: [{handler: internal, instances: [source-ip]}]
  - name: log-all
    actions: [{handler: recorder, instances: [access]}]
"""

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


def _address(target, ip: str, port: int) -> None:
    target.socket_address.address, target.socket_address.port_value = ip, port


def http_entry(request_id: str = "r1", *, remote: str = "10.1.2.3", code: int = 200) -> accesslog_pb2.HTTPAccessLogEntry:
    entry = accesslog_pb2.HTTPAccessLogEntry()
    common = entry.common_properties
    _address(common.downstream_remote_address, remote, 40000)
    _address(common.downstream_local_address, "10.4.5.6", 8080)
    common.tls_properties.tls_sni_hostname = "books.shop"
    common.tls_properties.peer_certificate_properties.subject_alt_name.add().uri = (
        "spiffe://cluster.local/ns/shop/sa/frontend")
    common.tls_properties.local_certificate_properties.subject_alt_name.add().uri = (
        "spiffe://cluster.local/ns/books/sa/reviews")
    common.start_time.FromDatetime(START)
    common.duration.FromMilliseconds(25)
    request = entry.request
    request.request_method = base_pb2.GET
    request.scheme, request.authority, request.path = "https", "books.shop", "/api/books?page=2"
    request.user_agent, request.referer, request.request_id = "curl/8", "https://shop/", request_id
    request.request_headers["x-user"] = "alice"
    request.request_headers_bytes, request.request_body_bytes = 100, 20
    response = entry.response
    response.response_code.value = code
    response.response_headers_bytes, response.response_body_bytes = 50, 300
    response.response_headers["content-type"] = "application/json"
    return entry


def http_message(*entries, log_name: str = "") -> als_pb2.StreamAccessLogsMessage:
    message = als_pb2.StreamAccessLogsMessage()
    if log_name:
        message.identifier.log_name = log_name
        message.identifier.node.id = "sidecar~10.4.5.6~books-1.shop~shop.svc.cluster.local"
    message.http_logs.log_entry.extend(entries)
    return message


def tcp_message(intermediate: bool = False) -> als_pb2.StreamAccessLogsMessage:
    message = als_pb2.StreamAccessLogsMessage()
    entry = message.tcp_logs.log_entry.add()
    common = entry.common_properties
    _address(common.downstream_remote_address, "10.1.2.3", 40001)
    _address(common.downstream_local_address, "10.4.5.6", 5432)
    common.start_time.FromDatetime(START)
    common.duration.FromSeconds(3)
    common.intermediate_log_entry = intermediate
    entry.connection_properties.received_bytes = 1234
    entry.connection_properties.sent_bytes = 5678
    return message


@pytest.fixture
async def server(envoy_server):
    return await envoy_server(CONFIG.replace("HOLD", "false"))


@pytest.fixture
async def held(envoy_server):
    running = await envoy_server(CONFIG.replace("HOLD", "true"))
    yield running
    handler(running, "recorder").release()


async def accepted(running, count: int) -> None:
    """Wait (bounded) until the report queue accepted ``count`` instances for the recorder."""
    for _ in range(500):
        stats = running.service.reports.stats().get("recorder")
        if stats is not None and stats.accepted >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the recorder's queue did not accept {count} instances in 5s")


async def delivered(running, count: int) -> list:
    """Wait (bounded) until the recorder holds ``count`` instances; returns their variables."""
    recorder = handler(running, "recorder")
    for _ in range(500):
        if len(recorder.instances) >= count:
            return [i.variables for i in recorder.instances]
        await asyncio.sleep(0.01)
    raise AssertionError(f"the recorder got {len(recorder.instances)} of {count} instances in 5s")


@VIA
async def test_http_entries_become_report_instances(server, via):
    async def messages():
        yield http_message(http_entry("r1"), log_name="books-access")
        yield http_message(http_entry("r2", code=503), http_entry("r3"))

    assert await accesslog(server, via).StreamAccessLogs(messages()) == als_pb2.StreamAccessLogsResponse()
    got = await delivered(server, 3)
    assert [v["request_id"] for v in got] == ["r1", "r2", "r3"]
    assert [v["code"] for v in got] == [200, 503, 200]
    first = got[0]
    assert {k: str(v) for k, v in first.items()} == {
        "source_ip": "10.1.2.3", "source_port": "40000",
        "source_principal": "spiffe://cluster.local/ns/shop/sa/frontend", "source_namespace": "shop",
        "destination_ip": "10.4.5.6", "destination_port": "8080",
        "destination_principal": "spiffe://cluster.local/ns/books/sa/reviews",
        "mtls": "True", "sni": "books.shop", "method": "GET", "scheme": "https", "host": "books.shop",
        "path": "/api/books?page=2", "url_path": "/api/books", "query_page": "2", "agent": "curl/8",
        "referer": "https://shop/", "request_id": "r1", "header_user": "alice", "request_size": "20",
        "request_total_size": "120", "request_time": str(START), "code": "200", "response_size": "300",
        "response_total_size": "350", "response_type": "application/json", "duration": "0:00:00.025000",
        "response_time": str(START + dt.timedelta(milliseconds=25)), "protocol": "http",
    }


@VIA
async def test_tcp_entries_and_grpc_status(server, via):
    grpc_entry = http_entry("g1")
    grpc_entry.request.request_headers["content-type"] = "application/grpc"
    grpc_entry.response.response_trailers["grpc-status"] = "14"

    async def messages():
        yield tcp_message()
        yield tcp_message(intermediate=True)
        yield http_message(grpc_entry)

    await accesslog(server, via).StreamAccessLogs(messages())
    got = await delivered(server, 3)
    tcp = {k: str(v) for k, v in got[0].items()}
    assert tcp == {"source_ip": "10.1.2.3", "source_port": "40001", "destination_ip": "10.4.5.6",
                   "destination_port": "5432", "mtls": "False", "received": "1234", "sent": "5678",
                   "connection_duration": "0:00:03", "event": "close", "context_time": str(START),
                   "protocol": "tcp"}
    assert got[1]["event"] == "continue"
    assert (got[2]["protocol"], got[2]["grpc_status"]) == ("grpc", "14")


async def test_an_entry_with_a_bad_address_is_kept_without_it(server):
    async def messages():
        yield http_message(http_entry("bad", remote="not-an-ip"))

    await accesslog(server, "unix").StreamAccessLogs(messages())
    (got,) = await delivered(server, 1)
    assert got["request_id"] == "bad" and "source_ip" not in got and got["source_port"] == 40000


async def test_a_broken_stream_loses_no_entry_already_received(held):
    call = accesslog(held, "tcp").StreamAccessLogs()
    await call.write(http_message(http_entry("a"), log_name="x"))
    await call.write(http_message(http_entry("b"), http_entry("c")))
    await accepted(held, 3)
    call.cancel()  # Envoy went away mid-stream, while the adapter is still busy
    with pytest.raises(asyncio.CancelledError):
        await call
    handler(held, "recorder").release()
    got = await delivered(held, 3)
    assert [v["request_id"] for v in got] == ["a", "b", "c"]


async def test_a_malformed_message_ends_the_stream_and_keeps_what_came_before(server):
    channel = server.channel(server.unix)
    raw = channel.stream_unary(f"/{SERVICE_NAME}/StreamAccessLogs", request_serializer=None,
                               response_deserializer=None)

    async def messages():
        yield http_message(http_entry("kept")).SerializeToString()
        yield b"\x12\xff\xff\xff\xff\x0f not a message"
        yield http_message(http_entry("after")).SerializeToString()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(messages())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message 1 is not a valid envoy.service.accesslog.v3.StreamAccessLogsMessage" in info.value.details()
    got = await delivered(server, 1)
    assert [v["request_id"] for v in got] == ["kept"]


@VIA
async def test_a_slow_report_adapter_never_holds_up_a_check(held, via):
    recorder = handler(held, "recorder")
    await accesslog(held, via).StreamAccessLogs(_one(http_message(*(http_entry(f"e{i}") for i in range(5)))))
    for _ in range(500):
        if recorder.entered.is_set():
            break
        await asyncio.sleep(0.01)
    assert recorder.entered.is_set() and not recorder.gate.is_set()  # the adapter is stuck in report()
    stub = authz(held, via)
    for i in range(20):
        response = await asyncio.wait_for(stub.Check(check_request(request_id=f"c{i}")), 5)
        assert response.status.code == 0
    denied = await asyncio.wait_for(stub.Check(check_request(source=("192.168.1.1", 1))), 5)
    assert denied.denied_response.status.code == 403
    assert recorder.instances == []  # still held: the checks did not wait for it
    recorder.release()
    assert len(await delivered(held, 5)) == 5


async def _one(message):
    yield message


async def test_a_large_message_is_queued_in_order_in_chunks(server):
    async def messages():
        yield http_message(*(http_entry(f"big{i}") for i in range(300)))

    await accesslog(server, "tcp").StreamAccessLogs(messages())
    got = await delivered(server, 300)
    assert [v["request_id"] for v in got] == [f"big{i}" for i in range(300)]
