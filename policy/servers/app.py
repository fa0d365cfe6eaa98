"""The gRPC server: every API of the service on every listen address, with health and reflection.

Listen addresses are ``HOST:PORT`` (TCP; port 0 picks a free one) or
``unix:/path/to.sock``. A Unix socket is never taken over from a live server and
only our own socket is removed on stop (:mod:`policy.servers.unix_socket`).

Stopping on SIGTERM (:func:`run_until_signal`) is a drain: health turns
NOT_SERVING while calls are still accepted for a drain delay (so load balancers
and Envoy move away), then every call already received is picked up and answered
within the grace period, then the service delivers every accepted report and
closes its handlers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from policy.runtime.service import PolicyService
from policy.servers.reflection import enable_reflection
from policy.servers import unix_socket
from policy.servers._intercept import MethodRouter, RegisteringServer
from policy.servers.unix_socket import DEFAULT_SOCKET_MODE, OwnedSocket

log = logging.getLogger("policy.servers")

DEFAULT_LISTEN = "127.0.0.1:9191"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Seconds health says NOT_SERVING while calls are still accepted, after SIGTERM and before stopping.
DEFAULT_DRAIN_DELAY = 3.0
#: Before stopping, wait until no call has started for this long (so calls already received are picked up).
PICKUP_QUIET = 0.1
#: ... for at most this long (and at most half the grace period).
PICKUP_MAX = 1.0

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
    :param socket_mode: permission bits of the Unix sockets it creates (default ``0660``).
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
        socket_mode: int = DEFAULT_SOCKET_MODE,
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
        self.socket_mode = socket_mode
        self._sockets: list[OwnedSocket] = []
        self._calls = MethodRouter()

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
        server.add_generic_rpc_handlers((self._calls,))
        # Registrars see the server through the router: every method is found in one table.
        registering: Any = RegisteringServer(server, self._calls)
        for registrar in self.registrars:
            self.services.extend(registrar(registering, self.service))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, registering)
        enable_reflection([*self.services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], registering)
        try:
            self._bind(server)
        except BaseException:
            self._remove_sockets()
            await self.service.stop()
            raise
        await server.start()
        self._server = server
        aliases = [alias for name in self.services for alias in HEALTH_ALIASES.get(name, ())]
        for name in ["", *self.services, *aliases]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.addresses

    def _bind(self, server: grpc.aio.Server) -> None:
        for address in self.listen:
            path = _unix_path(address)
            if path is not None:
                self._sockets.append(unix_socket.bind(server, path, self.socket_mode))
                self.addresses.append(f"unix:{path}")
            else:
                try:
                    port = server.add_insecure_port(address)
                except RuntimeError as exc:
                    raise OSError(f"cannot listen on {address}: {exc}") from None
                host = address.rsplit(":", 1)[0]
                self.addresses.append(f"{host}:{port}")

    def _remove_sockets(self) -> None:
        for owned in self._sockets:
            owned.remove()  # only when the path is still the socket we bound
        self._sockets.clear()

    async def drain(self, delay: float = 0.0, grace: float = 5.0) -> None:
        """Stop gracefully: NOT_SERVING on health, keep serving ``delay`` seconds, answer what was received, stop.

        Calls a client sent before the stop began are picked up (the server waits
        until none has started for :data:`PICKUP_QUIET` seconds) and answered; the
        whole stop takes at most ``delay + grace`` seconds.
        """
        loop = asyncio.get_running_loop()
        await self._health.enter_graceful_shutdown()
        if delay > 0:
            await asyncio.sleep(delay)
        deadline = loop.time() + grace
        # Under load that ignores NOT_SERVING, calls keep coming: stop looking for them in time to
        # leave the in-flight ones at least half the grace period.
        pickup_until = loop.time() + min(grace / 2, PICKUP_MAX)
        seen = -1
        while self._server is not None and self._calls.started != seen and loop.time() < pickup_until:
            seen = self._calls.started
            await asyncio.sleep(PICKUP_QUIET)
        await self.stop(max(0.0, deadline - loop.time()))

    async def stop(self, grace: float = 5.0) -> None:
        """Drain in-flight calls (up to ``grace`` seconds), then stop the service (flushing reports)."""
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
        await self.service.stop()
        self._remove_sockets()

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
                           on_ready: Callable[[list[str]], None] | None = None,
                           drain_delay: float = DEFAULT_DRAIN_DELAY) -> None:
    """Start ``server`` and serve until SIGTERM or SIGINT, then drain (see :meth:`PolicyServer.drain`).

    SIGTERM keeps accepting calls for ``drain_delay`` seconds with health NOT_SERVING;
    SIGINT (an operator's Ctrl-C) skips that delay.
    """
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):
            pass
    addresses = await server.start()
    if on_ready is not None:
        on_ready(addresses)
    await stop.wait()
    delay = drain_delay if received[0] == signal.SIGTERM else 0.0
    log.info("signal received: health NOT_SERVING, accepting calls for %gs more, then answering in-flight"
             " calls (up to %gs) and flushing reports", delay, grace)
    await server.drain(delay, grace)
