"""Envoy's access-log service (``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs``).

Each HTTP or TCP log entry becomes an attribute set that goes through the report
rules to the report adapters (``PolicyService.report``, which queues without
waiting). Entries are queued as each stream message arrives, so a stream that
breaks loses none already received; a message that does not decode ends the stream
with INVALID_ARGUMENT after the entries before it were queued.

=======================================  ========================================================
attribute                                from (``envoy.data.accesslog.v3``)
=======================================  ========================================================
source.ip, source.port                   ``common_properties.downstream_remote_address``
destination.ip, destination.port         ``common_properties.downstream_local_address``
source.principal (+ namespace,           the peer certificate's URI SAN (SPIFFE parsed as for
serviceAccount), connection.mtls         ext_authz); mtls is true when the peer sent a certificate
destination.principal (+ namespace ...)  the local certificate's URI SAN
connection.requested_server_name         ``tls_properties.tls_sni_hostname``
request.time / context.time              ``start_time`` (HTTP / TCP)
response.duration, response.time         ``duration`` (else ``time_to_last_downstream_tx_byte``); start + it
request.method, scheme, host, path,      ``request``: method, scheme, authority, path (url_path and
url_path, query_params, useragent,       query_params split as for ext_authz), user_agent, referer,
referer, id, headers                     request_id, the logged ``request_headers``
request.size, request.total_size         body bytes; header + body bytes
response.code, response.size,            ``response``: response_code, body bytes, header + body
response.total_size, response.headers    bytes, the logged ``response_headers``
response.grpc_status, grpc_message       the ``grpc-status`` / ``grpc-message`` trailers (or headers)
context.protocol                         ``grpc`` (gRPC content-type), ``http``, or ``tcp``
connection.received.bytes, sent.bytes    TCP ``connection_properties``
connection.duration, connection.event    TCP ``duration``; ``continue`` for an intermediate entry, else ``close``
=======================================  ========================================================

A field that does not translate (an address that is not an IP) is left out and
logged; the rest of the entry is still reported.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf.message import DecodeError

from policy.attributes import AttributeBag
from policy.logs import clip
from policy.runtime.service import PolicyService
from policy.servers._intercept import abort_after_draining
from policy.servers.envoy_attributes import TranslationError, ip_address, parse_spiffe, query_params, split_path

log = logging.getLogger("policy.servers.accesslog")

SERVICE_NAME = als_pb2.DESCRIPTOR.services_by_name["AccessLogService"].full_name

_Message = als_pb2.StreamAccessLogsMessage
#: Entries queued between two yields to the event loop.
_CHUNK = 64
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_METHODS = {v: k for k, v in base_pb2.RequestMethod.items() if v}


def _duration(value: Any) -> _dt.timedelta:
    return _dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def _address(address: Any, ip_name: str, port_name: str, field: str, out: dict[str, Any]) -> None:
    if not address.HasField("socket_address"):
        return  # a pipe or an internal address: no IP
    socket_address = address.socket_address
    if socket_address.address:
        try:
            out[ip_name] = ip_address(socket_address.address, field)
        except TranslationError as exc:
            log.warning("access log entry: %s (left out)", clip(exc))
    if socket_address.port_value:
        out[port_name] = socket_address.port_value


def _principal(certificate: Any, prefix: str, out: dict[str, Any]) -> None:
    for san in certificate.subject_alt_name:
        if san.uri:
            out[prefix + "principal"] = san.uri
            namespace, account = parse_spiffe(san.uri)
            if namespace is not None:
                out[prefix + "namespace"] = namespace
                out[prefix + "serviceAccount"] = account
            return


def _common(common: Any, out: dict[str, Any], time_name: str) -> _dt.datetime | None:
    """Translate the common properties; returns the start time when there is one."""
    if common.HasField("downstream_remote_address"):
        _address(common.downstream_remote_address, "source.ip", "source.port",
                 "common_properties.downstream_remote_address", out)
    if common.HasField("downstream_local_address"):
        _address(common.downstream_local_address, "destination.ip", "destination.port",
                 "common_properties.downstream_local_address", out)
    mtls = False
    if common.HasField("tls_properties"):
        tls = common.tls_properties
        if tls.tls_sni_hostname:
            out["connection.requested_server_name"] = tls.tls_sni_hostname
        if tls.HasField("peer_certificate_properties"):
            mtls = True
            _principal(tls.peer_certificate_properties, "source.", out)
        if tls.HasField("local_certificate_properties"):
            _principal(tls.local_certificate_properties, "destination.", out)
    out["connection.mtls"] = mtls
    start = None
    if common.HasField("start_time"):
        stamp = common.start_time
        try:
            start = _EPOCH + _dt.timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)
            out[time_name] = start
        except OverflowError:
            log.warning("access log entry: start_time %ss is out of range (left out)", stamp.seconds)
    return start


def http_entry_attributes(entry: Any) -> dict[str, Any]:
    """The attributes of one ``HTTPAccessLogEntry``."""
    out: dict[str, Any] = {}
    common = entry.common_properties
    start = _common(common, out, "request.time")
    took = None
    if common.HasField("duration"):
        took = _duration(common.duration)
    elif common.HasField("time_to_last_downstream_tx_byte"):
        took = _duration(common.time_to_last_downstream_tx_byte)
    if took is not None:
        out["response.duration"] = took
        if start is not None:
            out["response.time"] = start + took
    request, response = entry.request, entry.response
    method = _METHODS.get(request.request_method)
    if method is not None:
        out["request.method"] = method
    for value, name in ((request.scheme, "request.scheme"), (request.authority, "request.host"),
                        (request.user_agent, "request.useragent"), (request.referer, "request.referer"),
                        (request.request_id, "request.id")):
        if value:
            out[name] = value
    if request.path:
        out["request.path"] = request.path
        url_path, query = split_path(request.path)
        out["request.url_path"] = url_path
        if query is not None:
            out["request.query_params"] = query_params(query)
    request_headers = dict(request.request_headers)
    if request_headers:
        out["request.headers"] = request_headers
    if entry.HasField("request"):
        out["request.size"] = request.request_body_bytes
        out["request.total_size"] = request.request_headers_bytes + request.request_body_bytes
    response_headers = dict(response.response_headers)
    if response_headers:
        out["response.headers"] = response_headers
    if response.HasField("response_code"):
        out["response.code"] = response.response_code.value
    if entry.HasField("response"):
        out["response.size"] = response.response_body_bytes
        out["response.total_size"] = response.response_headers_bytes + response.response_body_bytes
    trailers = response.response_trailers
    for header, name in (("grpc-status", "response.grpc_status"), ("grpc-message", "response.grpc_message")):
        value = trailers[header] if header in trailers else response_headers.get(header)
        if value is not None:
            out[name] = value
    content_type = request_headers.get("content-type") or response_headers.get("content-type") or ""
    out["context.protocol"] = "grpc" if content_type.startswith("application/grpc") else "http"
    return out


def tcp_entry_attributes(entry: Any) -> dict[str, Any]:
    """The attributes of one ``TCPAccessLogEntry``."""
    out: dict[str, Any] = {}
    common = entry.common_properties
    _common(common, out, "context.time")
    if common.HasField("duration"):
        out["connection.duration"] = _duration(common.duration)
    out["connection.event"] = "continue" if common.intermediate_log_entry else "close"
    if entry.HasField("connection_properties"):
        connection = entry.connection_properties
        out["connection.received.bytes"] = connection.received_bytes
        out["connection.sent.bytes"] = connection.sent_bytes
    out["context.protocol"] = "tcp"
    return out


def message_bags(message: Any) -> list[AttributeBag]:
    """One attribute bag per log entry of a ``StreamAccessLogsMessage``."""
    if message.HasField("http_logs"):
        return [AttributeBag.trusted(http_entry_attributes(e)) for e in message.http_logs.log_entry]
    if message.HasField("tcp_logs"):
        return [AttributeBag.trusted(tcp_entry_attributes(e)) for e in message.tcp_logs.log_entry]
    return []


class AccessLogServicer:
    """Serves ``envoy.service.accesslog.v3.AccessLogService`` into a :class:`PolicyService`'s reports."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        #: Entries received and instances queued since start (for tests and debugging).
        self.entries = 0
        self.queued = 0

    async def StreamAccessLogs(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Queue every entry of every message as it arrives; answer when the stream ends."""
        index = 0
        log_name = ""
        async for data in requests:
            try:
                message = _Message.FromString(data)
            except (DecodeError, ValueError, RuntimeError) as exc:
                await abort_after_draining(requests, context, grpc.StatusCode.INVALID_ARGUMENT,
                                           f"message {index} is not a valid {_Message.DESCRIPTOR.full_name}: {exc}"
                                           f" ({self.entries} entries before it were kept)")
            if message.HasField("identifier") and message.identifier.log_name:
                log_name = message.identifier.log_name
            bags = message_bags(message)
            self.entries += len(bags)
            for start in range(0, len(bags), _CHUNK):
                if start:
                    await asyncio.sleep(0)  # a huge message must not hold checks up while it is queued
                self.queued += self.service.report(bags[start:start + _CHUNK])
            index += 1
        log.debug("access log stream %r ended after %d message(s)", log_name, index)
        return als_pb2.StreamAccessLogsResponse()


def register(server: grpc.aio.Server, service: PolicyService) -> list[str]:
    """Add the access-log service to ``server``; returns the service names registered."""
    servicer = AccessLogServicer(service)
    handler = grpc.stream_unary_rpc_method_handler(
        servicer.StreamAccessLogs, request_deserializer=None,
        response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString)
    methods = {"StreamAccessLogs": handler}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, methods),))
    server.add_registered_method_handlers(SERVICE_NAME, methods)
    return [SERVICE_NAME]
