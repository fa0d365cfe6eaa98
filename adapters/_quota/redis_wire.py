"""The quota script on the wire: EVALSHA commands encoded by hand, a batch exchanged on one pooled connection.

A quota call is one ``EVALSHA`` of :data:`~adapters._quota.lua.SCRIPT` with string keys
and integer arguments, answered by a list of integers. redis-py's pipeline serves any
command: per command it encodes each argument through its encoder, looks up a
response callback and arms a timeout for each reply read; at 64 concurrent calls that
was most of a call's CPU. Here a command is encoded once, straight into Redis's wire
protocol (RESP), and a batch is written in one go on a connection taken from the
client's own pool (so connecting, TLS, AUTH, SELECT and reconnecting stay redis-py's),
then its replies are read in order through the connection's parser (hiredis when
installed).

What it keeps from redis-py's pipeline: every reply is read before the connection
goes back to the pool (never a desynchronised socket); an error reply (``NOSCRIPT``)
is that command's answer, not the batch's; a connection error is retried once on a
fresh connection for the commands not yet answered (the client's one retry). What it
leaves to its caller: the time budget. Replies are read without a per-read timeout;
the caller bounds the whole exchange, and a cancelled read closes the connection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from adapters._quota.lua import SHA

_HEAD = b"$7\r\nEVALSHA\r\n$40\r\n" + SHA.encode() + b"\r\n"
_ENCODED: dict[int, bytes] = {}   # integer arguments seen before (limits, windows, flags), encoded
_ENCODED_MAX = 4096


def _integer(value: int) -> bytes:
    if type(value) is not int:  # noqa: E721 - True and 1.0 hash as 1: refused before the cache is asked
        raise TypeError(f"script arguments are integers, got {type(value).__name__} {value!r}")
    data = _ENCODED.get(value)
    if data is None:
        text = b"%d" % value
        data = b"$%d\r\n%s\r\n" % (len(text), text)
        if len(_ENCODED) < _ENCODED_MAX:
            _ENCODED[value] = data
    return data


def encode_evalsha(keys: Sequence[str], args: Sequence[int]) -> bytes:
    """``EVALSHA <script sha> len(keys) *keys *args`` in RESP (keys UTF-8, arguments integers)."""
    parts = [b"*%d\r\n" % (len(keys) + len(args) + 3), _HEAD, _integer(len(keys))]
    for key in keys:
        data = key.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    integer = _integer
    for arg in args:
        parts.append(integer(arg))
    return b"".join(parts)


async def exchange(pool: Any, commands: Sequence[bytes]) -> list[Any]:
    """Send ``commands`` (encoded) on one connection of ``pool``; their replies in order.

    An error reply is returned as its exception (``redis.exceptions.ResponseError``).
    A connection error is retried once, on a reconnected connection, for the
    commands not answered yet (they may have run: a retry can over-count). Any other
    failure, or a second one, raises. The connection always returns to the pool
    (closed, when the exchange did not read every reply).
    """
    connection = await pool.get_connection()
    try:
        replies: list[Any] = []
        retried = False
        while True:
            try:
                await connection.send_packed_command(b"".join(commands[len(replies):]))
                for _ in range(len(commands) - len(replies)):
                    try:
                        replies.append(await connection.read_response(timeout=math.inf))
                    except ResponseError as exc:  # this command's answer (the reply was read whole)
                        replies.append(exc)
                return replies
            except RedisConnectionError:
                if retried:
                    raise
                retried = True
                await connection.disconnect()  # the next send reconnects
    finally:
        await pool.release(connection)
