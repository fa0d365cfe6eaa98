"""Fixtures for the Envoy API tests: CheckRequest builders and a server factory with Envoy's own stubs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import struct_pb2

from tests.envoy import plugins_for_envoy_tests

JWT_FILTER = "envoy.filters.http.jwt_authn"


def check_request(
    *,
    source: tuple[str, int] | None = ("10.1.2.3", 43210),
    destination: tuple[str, int] | None = ("10.4.5.6", 8080),
    source_principal: str = "",
    source_certificate: str = "",
    source_labels: Mapping[str, str] | None = None,
    destination_principal: str = "",
    destination_labels: Mapping[str, str] | None = None,
    http: bool = True,
    method: str = "GET",
    path: str = "/api/books",
    host: str = "books.shop",
    scheme: str = "http",
    request_id: str = "req-1",
    headers: Mapping[str, str] | None = None,
    size: int = -1,
    body: str = "",
    raw_body: bytes = b"",
    time: int | None = 1_764_000_000,
    sni: str = "",
    context_extensions: Mapping[str, str] | None = None,
    jwt: Mapping[str, Any] | None = None,
) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy's ext_authz filter sends it (only the given parts set)."""
    request = external_auth_pb2.CheckRequest()
    attrs = request.attributes
    if source is not None:
        attrs.source.address.socket_address.address, attrs.source.address.socket_address.port_value = source
    if source_principal:
        attrs.source.principal = source_principal
    if source_certificate:
        attrs.source.certificate = source_certificate
    attrs.source.labels.update(source_labels or {})
    if destination is not None:
        address = attrs.destination.address.socket_address
        address.address, address.port_value = destination
    if destination_principal:
        attrs.destination.principal = destination_principal
    attrs.destination.labels.update(destination_labels or {})
    if time is not None:
        attrs.request.time.seconds = time
    if http:
        h = attrs.request.http
        h.method, h.path, h.host, h.scheme, h.id, h.size = method, path, host, scheme, request_id, size
        h.protocol = "HTTP/1.1"
        all_headers = {":method": method, ":path": path, ":authority": host, "x-request-id": request_id}
        all_headers.update(headers or {})
        h.headers.update(all_headers)
        if body:
            h.body = body
        if raw_body:
            h.raw_body = raw_body
    if sni:
        attrs.tls_session.sni = sni
    attrs.context_extensions.update(context_extensions or {})
    if jwt is not None:
        payloads = struct_pb2.Struct()
        payloads.update({"https://issuer.example": dict(jwt)})
        attrs.metadata_context.filter_metadata[JWT_FILTER].CopyFrom(payloads)
    return request


@pytest.fixture
def envoy_server(policy_config, policy_server_factory) -> Callable[..., Any]:
    """``await envoy_server(yaml_text)`` → a RunningServer (TCP + Unix socket) with the test adapters."""

    async def make(text: str, *plugins: Any) -> Any:
        return await policy_server_factory(policy_config(text), plugins_for_envoy_tests, *plugins)

    return make


def authz(running: Any, via: str) -> external_auth_pb2_grpc.AuthorizationStub:
    """Envoy's generated ext_authz stub on the server's TCP or Unix address."""
    return external_auth_pb2_grpc.AuthorizationStub(running.channel(running.tcp if via == "tcp" else running.unix))


def accesslog(running: Any, via: str) -> als_pb2_grpc.AccessLogServiceStub:
    """Envoy's generated access-log stub on the server's TCP or Unix address."""
    return als_pb2_grpc.AccessLogServiceStub(running.channel(running.tcp if via == "tcp" else running.unix))


def handler(running: Any, name: str) -> Any:
    """The built handler object named ``name`` in the config now in force."""
    return running.service.snapshot.handlers[name].handler


def headers_of(options: Any) -> dict[str, tuple[str, int]]:
    """HeaderValueOptions as ``{name: (value, append_action)}``."""
    return {o.header.key: (o.header.value, o.append_action) for o in options}


VIA = pytest.mark.parametrize("via", ["tcp", "unix"])
