"""The pytest fixtures of :mod:`policy.testing`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio

from policy.testing.clock import FakeClock
from policy.testing.harness import RunningServer, write_config
from policy.testing.recorder import CallRecorder, HookRecorder


class HostFactory(Protocol):
    """The type of the ``policy_host_factory`` fixture (annotate your test's parameter with it)."""

    def __call__(self, *plugins: object, autoload: bool = False) -> Any:
        """A plugin host with the built-ins and ``plugins`` (``.adapters``, ``.templates``)."""
        ...


class ConfigFactory(Protocol):
    """The type of the ``policy_config`` fixture."""

    def __call__(self, text: str, name: str = "policy.yaml") -> Path:
        """A config directory holding ``text`` as ``name``."""
        ...


class ServiceFactory(Protocol):
    """The type of the ``policy_service_factory`` fixture."""

    async def __call__(self, config_path: Path, *plugins: object, watch_interval: float = 0,
                       autoload: bool = False, **kw: Any) -> Any:
        """A started service (``await service.check(attributes)`` → a decision)."""
        ...


class ServerFactory(Protocol):
    """The type of the ``policy_server_factory`` fixture."""

    async def __call__(self, config_path: Path, *plugins: object, unix: bool = True,
                       watch_interval: float = 0, autoload: bool = False, **kw: Any) -> RunningServer:
        """A started server on loopback with ready stubs."""
        ...


@pytest.fixture
def policy_host_factory() -> Callable[..., Any]:
    """``policy_host_factory(*plugins, autoload=False)`` → a PluginHost with the built-ins and ``plugins``."""
    from policy.runtime.plugins import build_plugin_host

    def make(*plugins: Any, autoload: bool = False) -> Any:
        return build_plugin_host(autoload=autoload, extra_plugins=plugins)

    return make


@pytest.fixture
def policy_config(tmp_path: Path) -> Callable[..., Path]:
    """``policy_config(yaml_text, name="policy.yaml")`` → a config directory holding that file."""

    def make(text: str, name: str = "policy.yaml") -> Path:
        return write_config(tmp_path / "config", text, name)

    return make


@pytest_asyncio.fixture
async def policy_service_factory(policy_host_factory: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """``await policy_service_factory(config_path, *plugins, watch_interval=0, autoload=False)`` → a started PolicyService.

    Every service started is stopped when the test ends.
    """
    from policy.runtime.service import PolicyService

    started: list[Any] = []

    async def make(config_path: Path, *plugins: Any, watch_interval: float = 0, autoload: bool = False,
                   **kw: Any) -> Any:
        host = policy_host_factory(*plugins, autoload=autoload)
        service = PolicyService(config_path, host, watch_interval=watch_interval, **kw)
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


@pytest_asyncio.fixture
async def policy_server_factory(
    policy_host_factory: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Callable[..., Any]]:
    """``await policy_server_factory(config_path, *plugins, unix=True, autoload=False)`` → a started :class:`RunningServer`.

    The server listens on a free 127.0.0.1 port and (``unix=True``) a Unix socket in a
    temporary directory; every server started is stopped when the test ends.
    """
    from policy.runtime.service import PolicyService
    from policy.servers.app import PolicyServer

    running: list[RunningServer] = []

    async def make(config_path: Path, *plugins: Any, unix: bool = True, watch_interval: float = 0,
                   autoload: bool = False, **kw: Any) -> RunningServer:
        host = policy_host_factory(*plugins, autoload=autoload)
        service = PolicyService(config_path, host, watch_interval=watch_interval, **kw)
        listen = ["127.0.0.1:0"]  # the server binds a free port itself: no window for another process
        socket_address = None
        if unix:
            socket_dir = tmp_path_factory.mktemp("sock")
            socket_address = f"unix:{socket_dir / 'policy.sock'}"
            listen.append(socket_address)
        server = PolicyServer(service, listen)
        bound = await server.start()
        tcp = next(address for address in bound if address.startswith("127.0.0.1:"))
        handle = RunningServer(server, tcp, socket_address)
        running.append(handle)
        return handle

    yield make
    for handle in running:
        await handle.close()


@pytest.fixture
def policy_hook_recorder() -> HookRecorder:
    """A :class:`~policy.testing.HookRecorder`: pass it as a plugin, then read ``.calls``."""
    return HookRecorder()


@pytest.fixture
def policy_call_recorder() -> CallRecorder:
    """A :class:`~policy.testing.CallRecorder`: pass it as a plugin to record every handler call."""
    return CallRecorder()


@pytest.fixture
def policy_fake_clock() -> FakeClock:
    """A :class:`~policy.testing.FakeClock` at a fixed time; ``.advance(seconds)`` moves it."""
    return FakeClock()
