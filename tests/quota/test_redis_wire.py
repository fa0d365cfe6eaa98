"""The quota script on the wire: hand-encoded EVALSHA, a batch on one pooled connection, same answers as redis-py.

Encoding is checked against redis-py's own ``pack_command``; exchanges run against
the suite's real redis-server (error replies, a cancelled read, concurrent calls in
one batch); the retry of a dropped connection uses a fake connection (our own logic).
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from adapters._quota.lua import SCRIPT, SHA
from adapters._quota.redis_wire import encode_evalsha, exchange
from adapters.redisquota import RedisQuotaAdapter
from policy import Quota, QuotaArgs

ENCODING_CASES = [
    (["quota:{q|user=u1}:f3600000"], [1, 0, 0, 0, 5, 1000000000, 3600000, 360000, 1]),
    (["quota:{q|user=%C3%A9t%C3%A9}:c", "quota:{q}:d:x"], [1, 1, 0, 1000, 2, 7, 0, 3600000, -3]),
    (["k\u00e9y-\u6f22", "two"], [2, 0, 1, 0, 3, 5, 60000, 1, 1, 4, 5, 60000, 1, 0, 10 ** 15]),
    ([], [0, 0, 0, 0, 1234567890123]),
]


@pytest.mark.parametrize(("keys", "args"), ENCODING_CASES)
def test_encoding_is_byte_for_byte_redis_pys(keys, args):
    expected = b"".join(Connection().pack_command("EVALSHA", SHA, len(keys), *keys, *args))
    assert encode_evalsha(keys, args) == expected
    assert encode_evalsha(keys, args) == expected   # again, from the cache of encoded integers


@pytest.mark.parametrize("bad", [True, 1.5, "1"])
def test_an_argument_that_is_not_an_integer_is_refused(bad):
    with pytest.raises(TypeError):
        encode_evalsha(["k"], [1, bad])


@pytest.fixture
async def client(redis_server):
    client = aioredis.Redis.from_url(redis_server.url)
    await client.script_load(SCRIPT)
    yield client
    await client.aclose()


def charge(key: str, amount: int = 1, limit: int = 10) -> bytes:
    """One aligned fixed-window charge (code 0, 1h window) of ``key``."""
    return encode_evalsha([key], [1, 0, 0, 0, 0, limit, 3_600_000, 3_600_000, amount])


async def test_a_batch_answers_each_command_in_order_and_an_error_reply_is_only_its_own(client, unique):
    good, wrong = unique("wire-good"), unique("wire-wrong")
    await client.set(wrong, "a string, not the script's hash")
    replies = await exchange(client.connection_pool, [charge(good), charge(wrong), charge(good, 2)])
    assert replies[0][:2] == [1, 9] and replies[2][:2] == [2, 7]      # granted, remaining
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
    # The connection went back to the pool in step: the next batch reads its own replies.
    assert (await exchange(client.connection_pool, [charge(good)]))[0][:2] == [1, 6]


async def test_a_flushed_script_answers_noscript_for_that_command(client, unique):
    await client.script_flush()
    replies = await exchange(client.connection_pool, [charge(unique("wire-noscript"))])
    assert isinstance(replies[0], NoScriptError)


async def test_a_cancelled_exchange_closes_its_connection_instead_of_pooling_it_mid_reply(client, unique):
    blocked = unique("wire-blocked")
    blpop = b"*3\r\n$5\r\nBLPOP\r\n$%d\r\n%s\r\n$1\r\n0\r\n" % (len(blocked), blocked.encode())
    task = asyncio.create_task(exchange(client.connection_pool, [blpop]))
    for _ in range(1000):   # bounded: until Redis shows the call blocked
        if (await client.info("clients"))["blocked_clients"] >= 1:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the BLPOP never blocked")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Closed, not pooled: the blocked BLPOP is gone, so a pushed value stays in the list.
    await client.rpush(blocked, "x")
    assert await client.llen(blocked) == 1
    key = unique("wire-after")
    assert (await exchange(client.connection_pool, [charge(key)]))[0][:2] == [1, 9]


class DroppingConnection:
    """Drops once on its first read (a connection a Redis restart left dead), then answers in order."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.disconnects = 0
        self.reads = 0

    async def send_packed_command(self, command, check_health=True):
        self.sent.append(command)

    async def read_response(self, **options):
        self.reads += 1
        if self.reads == 2:
            raise RedisConnectionError("Connection closed by server.")
        return self.reads

    async def disconnect(self, nowait=False):
        self.disconnects += 1


class OnePool:
    def __init__(self, connection) -> None:
        self.connection = connection
        self.released = 0

    async def get_connection(self):
        return self.connection

    async def release(self, connection):
        self.released += 1


async def test_a_dropped_connection_is_retried_once_for_the_commands_not_answered_yet():
    connection = DroppingConnection()
    pool = OnePool(connection)
    replies = await exchange(pool, [b"a", b"b", b"c"])
    assert replies == [1, 3, 4]                       # the first answer kept, the rest read after the resend
    assert connection.sent == [b"abc", b"bc"] and connection.disconnects == 1 and pool.released == 1


async def test_a_second_drop_raises_and_still_releases_the_connection():
    class AlwaysDropping(DroppingConnection):
        async def read_response(self, **options):
            raise RedisConnectionError("Connection refused.")

    pool = OnePool(AlwaysDropping())
    with pytest.raises(RedisConnectionError):
        await exchange(pool, [b"a"])
    assert pool.released == 1 and pool.connection.sent == [b"a", b"a"]


async def test_concurrent_calls_share_a_batch_and_keep_each_calls_exact_answer(build, redis_server, client, unique):
    name = unique("wire-batch")
    handler = build(RedisQuotaAdapter, {"redisServerUrl": redis_server.url, "connectionPoolSize": 64,
                                        "quotas": [{"name": name, "maxAmount": 40, "validDuration": "1h"}]})
    await handler.start()                                            # opens the handler's first connection
    connections = (await client.info("stats"))["total_connections_received"]
    answers = await asyncio.gather(*(handler.quota(Quota(name, {}), QuotaArgs(name, 1)) for _ in range(50)))
    assert sum(a.granted_amount for a in answers) == 40              # never over the limit
    assert sorted(a.remaining for a in answers if a.granted_amount) == list(range(40))   # each its own count
    assert handler.limiter.stats["redis_calls"] == 50
    # one event-loop turn, one batch: the 50 calls went out on the one connection already open
    assert (await client.info("stats"))["total_connections_received"] == connections


async def test_calls_encoded_once_still_carry_each_calls_amount_and_best_effort(build, redis_server, unique):
    name = unique("wire-memo")
    handler = build(RedisQuotaAdapter, {"redisServerUrl": redis_server.url, "localOverLimitCache": False,
                                        "quotas": [{"name": name, "maxAmount": 10, "validDuration": "1h"}]})
    calls = [(3, False), (5, False), (3, False), (3, True), (1, False), (3, False), (-4, False), (3, False)]
    answers = []
    for amount, best_effort in calls + calls[:2]:   # the repeated calls come from the encoded-call cache
        answer = await handler.quota(Quota(name, {}), QuotaArgs(name, amount, best_effort=best_effort))
        answers.append((answer.granted_amount, answer.remaining))
    assert answers == [(3, 7), (5, 2), (0, 2), (2, 0), (0, 0), (0, 0), (4, 4), (3, 1), (0, 1), (0, 1)]
    assert len(handler.limiter._commands) == 5      # (3), (5), (3, best effort), (1), (-4): one encoding each
