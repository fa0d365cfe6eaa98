"""The gRPC server: every API of the service on every listen address, with health and reflection.

Listen addresses are ``HOST:PORT`` (TCP; port 0 picks a free one) or
``unix:/path/to.sock``. Stopping drains in-flight calls for a grace period, then
the service delivers every accepted report and closes its handlers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from policy.runtime.service import PolicyService

log = logging.getLogger("policy.servers")

DEFAULT_LISTEN = "127.0.0.1:9191"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: Functions that add one API to a server and return the gRPC service names they added.
Registrar = Callable[[grpc.aio.Server, PolicyService], list[str]]


#: Modules whose ``register(server, service) -> list[str]`` adds one API; all are served on every address.
API_MODULES: tuple[str, ...] = (
    "policy.servers.native",
    "policy.servers.ratelimit",
    "policy.servers.ext_authz",
    "policy.servers.accesslog",
)


#: Extra health-check names answered for a served API (envoyproxy/ratelimit registers ``ratelimit``).
HEALTH_ALIASES: dict[str, tuple[str, ...]] = {
    "envoy.service.ratelimit.v3.RateLimitService": ("ratelimit",),
}


def default_registrars() -> list[Registrar]:
    """The ``register`` function of every module in :data:`API_MODULES`."""
    import importlib

    return [importlib.import_module(name).register for name in API_MODULES]


def _unix_path(address: str) -> str | None:
    if address.startswith("unix://"):
        return address[len("unix://"):]
    if address.startswith("unix:"):
        return address[len("unix:"):]
    return None


class PolicyServer:
    """A grpc.aio server for a :class:`PolicyService`.

    :param listen: addresses to listen on (TCP ``host:port`` or ``unix:/path``).
    :param registrars: APIs to serve (default: all).
    :param reuse_port: bind TCP addresses with SO_REUSEPORT, shared with the other workers
        of ``policy serve --workers N`` (:mod:`policy.servers.workers`).
    """

    def __init__(
        self,
        service: PolicyService,
        listen: Sequence[str] = (DEFAULT_LISTEN,),
        *,
        registrars: Sequence[Registrar] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        reuse_port: bool = False,
    ) -> None:
        self.service = service
        self.listen = list(listen) or [DEFAULT_LISTEN]
        self.registrars = list(registrars) if registrars is not None else default_registrars()
        self.max_message_bytes = max_message_bytes
        self.reuse_port = reuse_port
        self.addresses: list[str] = []
        self.services: list[str] = []
        self._server: grpc.aio.Server | None = None
        self._health = HealthServicer()
        self._sockets: list[str] = []

    async def start(self) -> list[str]:
        """Start the service and the server; returns the bound addresses (real ports filled in)."""
        await self.service.start()
        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            # Off by default, so a second server on a busy port fails; on for ``serve --workers``.
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
        ]
        server = grpc.aio.server(options=options)
        for registrar in self.registrars:
            self.services.extend(registrar(server, self.service))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*self.services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            server,
        )
        for address in self.listen:
            path = _unix_path(address)
            if path is not None:
                socket_path = Path(path)
                socket_path.parent.mkdir(parents=True, exist_ok=True)
                if socket_path.is_socket():
                    socket_path.unlink()  # a stale socket from a killed process
                server.add_insecure_port(f"unix:{path}")
                self._sockets.append(path)
                self.addresses.append(f"unix:{path}")
            else:
                try:
                    port = server.add_insecure_port(address)
                except RuntimeError as exc:
                    raise OSError(f"cannot listen on {address}: {exc}") from None
                host = address.rsplit(":", 1)[0]
                self.addresses.append(f"{host}:{port}")
        await server.start()
        self._server = server
        aliases = [alias for name in self.services for alias in HEALTH_ALIASES.get(name, ())]
        for name in ["", *self.services, *aliases]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.addresses

    async def stop(self, grace: float = 5.0) -> None:
        """Drain in-flight calls (up to ``grace`` seconds), then stop the service (flushing reports)."""
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
        await self.service.stop()
        for path in self._sockets:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._sockets.clear()

    async def wait(self) -> None:
        """Wait until the server stops."""
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> "PolicyServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(grace=1.0)


async def run_until_signal(server: PolicyServer, grace: float = 5.0,
                           on_ready: Callable[[list[str]], None] | None = None) -> None:
    """Start ``server`` and serve until SIGTERM or SIGINT, then stop gracefully."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    addresses = await server.start()
    if on_ready is not None:
        on_ready(addresses)
    await stop.wait()
    log.info("signal received: draining in-flight calls (up to %gs) and flushing reports", grace)
    await server.stop(grace)
