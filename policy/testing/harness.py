"""Helpers behind the fixtures: free ports, config directories, a running server with clients."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (loopback only).

    Racy by nature: another process may take the port before the caller binds it. Prefer
    binding port 0 and reading the bound port back (the server fixtures do; ``policy serve
    --listen 127.0.0.1:0`` prints it), or keep a bound socket as the reservation.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def write_config(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    """Write dedented YAML ``text`` to ``directory/name``; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(textwrap.dedent(text))
    return directory


@dataclass
class RunningServer:
    """A started PolicyServer with one gRPC channel per address.

    :param tcp: ``127.0.0.1:PORT``.
    :param unix: ``unix:/path`` or None.
    """

    server: Any
    tcp: str
    unix: str | None
    channels: dict[str, Any] = field(default_factory=dict)

    @property
    def service(self) -> Any:
        """The PolicyService behind the server."""
        return self.server.service

    def channel(self, address: str | None = None) -> Any:
        """A grpc.aio channel to ``address`` (default: the TCP one), created once."""
        import grpc

        address = address or self.tcp
        if address not in self.channels:
            self.channels[address] = grpc.aio.insecure_channel(address)
        return self.channels[address]

    def native(self, address: str | None = None) -> Any:
        """A ``policy.v1.Policy`` stub on ``address``."""
        from policy.v1 import policy_pb2_grpc

        return policy_pb2_grpc.PolicyStub(self.channel(address))

    def ext_authz(self, address: str | None = None) -> Any:
        """An Envoy ``envoy.service.auth.v3.Authorization`` stub on ``address`` (default: TCP).

        Answered by the server's ext_authz API when it serves one; otherwise calls end
        with UNIMPLEMENTED. Build requests with :func:`ext_authz_request`.
        """
        from envoy.service.auth.v3 import external_auth_pb2_grpc

        return external_auth_pb2_grpc.AuthorizationStub(self.channel(address))

    async def close(self) -> None:
        """Close the channels and stop the server."""
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()
        await self.server.stop(grace=1.0)


async def native_check(stub: Any, attributes: Mapping[str, Any], quotas: Mapping[str, int] | None = None,
                       deduplication_id: str = "") -> Any:
    """Send one native Check with typed Python attribute values; returns the CheckResponse."""
    from policy.servers.native_codec import attributes_to_proto
    from policy.v1 import policy_pb2

    request = policy_pb2.CheckRequest(attributes=attributes_to_proto(attributes),
                                      deduplication_id=deduplication_id)
    for name, amount in (quotas or {}).items():
        request.quotas[name].amount = amount
    return await stub.Check(request)


async def native_report(stub: Any, batch: Sequence[Mapping[str, Any]]) -> Any:
    """Send one native Report: one attribute set per entry of ``batch``, typed Python values."""
    from policy.servers.native_codec import attributes_to_proto
    from policy.v1 import policy_pb2

    return await stub.Report(policy_pb2.ReportRequest(attributes=[attributes_to_proto(a) for a in batch]))


def served_apis() -> tuple[str, ...]:
    """The gRPC APIs a server of this installation serves (``"ext_authz"``, ``"ratelimit"`` ...)."""
    from policy.servers.app import API_MODULES

    return tuple(module.rsplit(".", 1)[-1] for module in API_MODULES)


def ext_authz_request(*, method: str = "GET", path: str = "/", host: str = "",
                      headers: Mapping[str, str] | None = None, source_ip: str = "127.0.0.1",
                      source_port: int = 50000, destination_ip: str = "127.0.0.1",
                      destination_port: int = 8080) -> Any:
    """An Envoy ext_authz v3 ``CheckRequest`` for one HTTP request, as Envoy would send it."""
    from envoy.service.auth.v3 import external_auth_pb2

    request = external_auth_pb2.CheckRequest()
    attrs = request.attributes
    attrs.source.address.socket_address.address = source_ip
    attrs.source.address.socket_address.port_value = source_port
    attrs.destination.address.socket_address.address = destination_ip
    attrs.destination.address.socket_address.port_value = destination_port
    http = attrs.request.http
    http.method = method
    http.path = path
    http.host = host
    for name, value in (headers or {}).items():
        http.headers[name.lower()] = value
    return request
