"""Fixtures for the quota tests: a fake clock, building handlers, a real Redis and a real Redis Cluster.

The Redis server and the cluster are session-scoped (started once, killed at
session end); tests keep apart by using distinct quota names and flushing.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policy.testing import FakeClock

from policy import BuildContext, Clock, Handler, parse_params
from tests.quota.redis_procs import RedisCluster, RedisServer

_names = itertools.count()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake clock at a whole second (so fixed windows start now)."""
    return FakeClock()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("q")`` → a name no other test uses (keeps Redis keys apart)."""
    return lambda prefix: f"{prefix}{next(_names)}"


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Build a handler as the host does (parse, validate, build); every one is closed at the end."""
    built: list[Handler] = []

    def _build(adapter: Any, raw: dict[str, Any] | None = None, clock: Clock | None = None) -> Handler:
        params = parse_params(adapter.Params, raw or {})
        errors = list(adapter.validate(params))
        assert errors == [], errors
        handler = adapter.build(params, BuildContext(handler="h", config_dir=tmp_path, clock=clock or Clock()))
        built.append(handler)
        return handler

    yield _build
    for handler in built:
        result = handler.close()
        if hasattr(result, "__await__"):
            await result


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real 3-node Redis Cluster (no replicas) on free loopback ports for the whole session."""
    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (for killing and restarting it)."""
    server = RedisServer().start()
    yield server
    server.stop()
