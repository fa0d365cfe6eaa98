"""Unit tests of the Redis limiter's failure paths with fake clients (our own logic, no Redis).

Every client failure — including the RuntimeError / AttributeError a closed
transport raises inside redis-py — answers by failMode, and a call never
outlives its timeout even when the client's clean-up after a cancel hangs.
"""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from adapters.redisquota import RedisQuotaAdapter
from policy import AdapterError, Code, Quota, QuotaArgs


class FakeConnection:
    """A pooled connection of a fake client: each reply read is one call of the client's ``evalsha``."""

    def __init__(self, client: "FailingClient") -> None:
        self.client = client

    async def send_packed_command(self, command, check_health=True):
        pass

    async def read_response(self, **options):
        return await self.client.evalsha()

    async def disconnect(self, nowait=False):
        pass


class FakePool:
    """The connection pool of a fake client (a single server's batches take their connection here)."""

    def __init__(self, client: "FailingClient") -> None:
        self.client = client

    async def get_connection(self, *args):
        return FakeConnection(self.client)

    async def release(self, connection):
        pass


class FailingClient:
    """A redis.asyncio-like client whose every call raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0
        self.connection_pool = FakePool(self)

    async def evalsha(self, *args):
        self.calls += 1
        raise self.error

    eval = evalsha
    script_load = evalsha

    async def aclose(self):
        pass


class StuckClient(FailingClient):
    """Never answers; when cancelled, its clean-up waits until ``released`` (like a hung disconnect)."""

    def __init__(self) -> None:
        super().__init__(RuntimeError("unused"))
        self.released = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def evalsha(self, *args):
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            await asyncio.shield(self.released.wait())
            raise

    eval = evalsha


class FlakyClient(FailingClient):
    """Fails its first call with ``error`` (a pooled connection a restart left dead), then answers."""

    async def evalsha(self, *args):
        self.calls += 1
        if self.calls == 1:
            raise self.error
        return [1, 99, 1000, 1, 0]

    eval = evalsha


def params(fail_mode, cluster=False):
    return {"redisServerUrl": "redis://127.0.0.1:1", "failMode": fail_mode, "cluster": cluster,
            "timeout": "100ms", "retryInterval": "1h",
            "quotas": [{"name": "q", "maxAmount": 100, "validDuration": "1h"}]}


async def ask(handler):
    return await handler.quota(Quota("q", {}), QuotaArgs("q", 1))


CLIENT_ERRORS = [RuntimeError("TCPTransport closed=True"), AttributeError("'NoneType' object has no attribute 'write'"),
                 ValueError("bad reply"), ConnectionResetError(104, "reset")]


@pytest.mark.parametrize("cluster", [False, True])
@pytest.mark.parametrize("error", CLIENT_ERRORS, ids=lambda e: type(e).__name__)
async def test_every_client_error_answers_by_the_fail_mode(build, error, cluster):
    opened = build(RedisQuotaAdapter, params("OPEN", cluster))
    closed = build(RedisQuotaAdapter, params("CLOSED", cluster))
    for handler in (opened, closed):
        handler.limiter.client = FailingClient(error)
    granted = await ask(opened)
    assert granted.ok and granted.granted_amount == 1 and opened.stats["fail_open"] == 1
    denied = await ask(closed)
    assert denied.status.code == Code.UNAVAILABLE and denied.granted_amount == 0
    assert type(error).__name__ in denied.status.message
    # the rate-limit service path: OPEN counts nothing (within the limit), CLOSED is
    # UNAVAILABLE (never INTERNAL)
    opened.limiter._down_until = closed.limiter._down_until = 0.0
    assert await opened.rate_limit_count([("c", 1, 5, 60.0)]) == [(0, 0.0)]
    with pytest.raises(AdapterError) as err:
        await closed.rate_limit_count([("c", 1, 5, 60.0)])
    assert err.value.code == Code.UNAVAILABLE


async def test_start_with_a_broken_client_is_not_fatal(build):
    handler = build(RedisQuotaAdapter, params("CLOSED"))
    handler.limiter.client = FailingClient(AttributeError("closed transport"))
    await handler.start()  # logged; failMode answers meanwhile


@pytest.mark.parametrize("cluster", [False, True])
async def test_a_call_returns_at_its_timeout_even_when_the_clients_clean_up_hangs(build, cluster):
    handler = build(RedisQuotaAdapter, params("CLOSED", cluster))
    stuck = StuckClient()
    handler.limiter.client = stuck
    result = await asyncio.wait_for(ask(handler), 30)   # the guard only; the timeout is 100ms
    assert result.status.code == Code.UNAVAILABLE and "TimeoutError" in result.status.message
    assert not stuck.released.is_set()                  # answered while the clean-up still hangs
    stuck.released.set()
    await handler.limiter.close()


async def test_a_dead_pooled_connection_is_retried_once_not_an_outage(build):
    handler = build(RedisQuotaAdapter, params("CLOSED"))
    handler.limiter.client = FlakyClient(ConnectionResetError(104, "Connection reset by peer"))
    result = await ask(handler)
    assert result.ok and result.granted_amount == 1
    assert handler.limiter.stats["retries"] == 1 and handler.limiter.stats["errors"] == 0
    assert (await ask(handler)).ok                       # the breaker never opened


async def test_a_timeout_is_not_retried(build):
    handler = build(RedisQuotaAdapter, params("CLOSED", cluster=True))
    stuck = StuckClient()
    handler.limiter.client = stuck
    stuck.released.set()
    result = await asyncio.wait_for(ask(handler), 30)
    assert result.status.code == Code.UNAVAILABLE and stuck.calls == 1


async def test_a_stale_failure_after_a_later_success_does_not_open_the_breaker(build):
    handler = build(RedisQuotaAdapter, params("CLOSED", cluster=True))
    limiter = handler.limiter
    gate = asyncio.Event()

    old = contextvars.ContextVar("old", default=False)

    class Client(FailingClient):
        async def evalsha(self, *args):
            self.calls += 1
            if old.get():                # the old call, on dead connections: its failure arrives late
                await gate.wait()
                raise ConnectionResetError(104, "reset")
            return [1, 99, 1000, 1, 0]

    async def old_call():
        old.set(True)
        return await ask(handler)

    limiter.client = Client(RuntimeError())
    limiter.timeout = 30.0
    first = asyncio.create_task(old_call())
    while limiter.client.calls < 1:
        await asyncio.sleep(0)
    second = await ask(handler)          # begun later, succeeds
    assert second.ok
    gate.set()
    assert (await first).status.code == Code.UNAVAILABLE
    assert (await ask(handler)).ok       # Redis answers: the old call's failure did not open the breaker
    assert limiter.stats["short_circuited"] == 0


RLS_POLICY = """
settings:
  rateLimit: {{handler: shared}}
handlers:
  - name: shared
    adapter: redisquota
    params: {{redisServerUrl: "redis://127.0.0.1:1", failMode: {mode}, timeout: 100ms, retryInterval: 1h, quotas: []}}
"""

RLS = """
domain: shop
descriptors:
  - key: path
    rate_limit: {unit: minute, requests_per_unit: 5}
"""


@pytest.mark.parametrize("mode", ["OPEN", "CLOSED"])
async def test_should_rate_limit_answers_a_closed_transport_by_fail_mode(tmp_path, policy_server_factory, mode):
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
    import grpc

    config = tmp_path / "config"
    (config / "ratelimit").mkdir(parents=True)
    (config / "policy.yaml").write_text(RLS_POLICY.format(mode=mode))
    (config / "ratelimit" / "shop.yaml").write_text(RLS)
    running = await policy_server_factory(config, unix=False)
    handler = running.service.snapshot.handlers["shared"].handler
    handler.limiter.client = FailingClient(RuntimeError("unable to perform operation on <TCPTransport closed=True>"))
    request = rls_pb2.RateLimitRequest(domain="shop", hits_addend=1)
    entry = request.descriptors.add().entries.add()
    entry.key, entry.value = "path", "/a"
    stub = rls_pb2_grpc.RateLimitServiceStub(running.channel())
    if mode == "OPEN":
        reply = await stub.ShouldRateLimit(request)
        assert reply.overall_code == rls_pb2.RateLimitResponse.OK
    else:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ShouldRateLimit(request)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
