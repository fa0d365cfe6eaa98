"""Counters in Redis or a Redis Cluster: one atomic Lua script per call, a local over-limit cache.

Keys are ``<prefix>{<counter id>}:<kind>``: the braces make the counter id a hash
tag, so a counter's keys (and its deduplication keys) share one slot and the
same script runs on a Redis Cluster. Time is read inside the script
(``TIME``), never from this host. The script is loaded once and called by its
SHA1; a ``NOSCRIPT`` answer (a restarted or failed-over Redis) runs it in full,
which loads it again.

The local fast path remembers, per counter, until when it is known to be
exhausted (remaining 0 for the rest of its window) and answers those calls
without Redis. Calls carrying a deduplication id skip it (a retry of a granted
call must be answered as granted).

Failures. Whatever goes wrong talking to Redis (a refused or reset connection, a
timeout, a cluster error, a closed transport surfacing as RuntimeError or
AttributeError inside the client) raises :class:`LimiterUnavailable`, which the
adapter answers by its fail mode; nothing else escapes. Every call returns within
``timeout`` (a cluster call runs in its own task, abandoned to clean up in the
background when it overruns; a single server's calls of one event-loop turn go out
as one batch on one connection, see :mod:`adapters._quota.redis_wire`, and a timer
answers them at the earliest of their deadlines and cancels the batch). A call that
fails on a connection (not a timeout)
is tried once more within the same budget: a pooled connection left dead by a
Redis restart costs one retry, not an outage. After a failure, calls fail at once
for ``retry_interval`` seconds (a circuit breaker), unless a call begun later has
succeeded meanwhile (then the failure was a stale connection, and Redis answers).
A retried script may have run once already (its answer lost with the connection):
that over-counts, never over-grants.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters._quota.core import Allocation, Counter, LimiterUnavailable
from adapters._quota.keys import digest, escape
from adapters._quota.lua import ALGORITHM_CODES, ALLOCATION_MODE, COUNT_ALWAYS, COUNT_STOP_WHEN_OVER, SCRIPT, SHA
from adapters._quota.params import Algorithm
from adapters._quota.redis_wire import encode_evalsha, exchange

log = logging.getLogger("policy.adapter.redisquota")

_FAST_PATH_MAX = 100_000  # counters remembered as exhausted, at most
_COMMANDS_MAX = 4_096      # encoded script calls remembered (see RedisLimiter._script)
_CODES = {algorithm: ALGORITHM_CODES[algorithm.value] for algorithm in Algorithm}
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError, RedisTimeoutError)
#: One queued script call: its encoded command, keys, arguments and the future its caller awaits.
_Entry = tuple[bytes, list[str], list[Any], "asyncio.Future[Any]"]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"redis: {type(exc).__name__}: {text}".rstrip(": ")


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned call's outcome is not wanted; retrieve it so it is not reported


def counter_key(prefix: str, counter: Counter) -> str:
    """The Redis key of a counter (hash-tagged by its id; the window is part of the name)."""
    if counter.window == 0:
        kind = "c"
    elif _CODES[counter.algorithm] == 0:
        kind = f"f{round(counter.window * 1000)}"
    elif _CODES[counter.algorithm] == 5:
        kind = f"s{round(counter.window * 1000)}"
    else:
        kind = f"r{round(counter.window * 1000)}.{round(counter.bucket * 1000)}"
    return f"{prefix}{{{counter.id}}}:{kind}"


def dedup_key(prefix: str, counter: Counter, dedup_id: str) -> str:
    """The key remembering a deduplication id's grant (same slot as the counter)."""
    text = escape(dedup_id)
    if len(text) > 64:
        text = "#" + digest(dedup_id)
    return f"{prefix}{{{counter.id}}}:d:{text}"


class RedisLimiter:
    """Charges counters in Redis; see the module docstring.

    :param client: a ``redis.asyncio`` client (``Redis`` or ``RedisCluster``).
    :param cluster: True for a Redis Cluster (calls are grouped by hash slot).
    :param idle_ttl: seconds an allocation-mode counter lives without changes.
    :param min_dedup: seconds a deduplication id is remembered at least.
    :param timeout: seconds a call may take before it counts as a failure.
    :param retry_interval: seconds calls fail at once after a failure.
    :param fast_path: answer counters known to be exhausted without Redis.
    """

    def __init__(self, client: Any, *, cluster: bool = False, prefix: str = "quota:", idle_ttl: float = 3600.0,
                 min_dedup: float = 1.0, timeout: float = 0.5, retry_interval: float = 0.5,
                 fast_path: bool = True, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.cluster = cluster
        self.prefix = prefix
        self.idle_ttl_ms = max(1, round(idle_ttl * 1000))
        self.dedup_ms = max(1, round(min_dedup * 1000))
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.fast_path = fast_path
        self._monotonic = monotonic
        self._exhausted: dict[str, float] = {}
        self._down_until = 0.0
        self.stats = {"redis_calls": 0, "fast_path": 0, "errors": 0, "short_circuited": 0, "script_loads": 0,
                      "recoveries": 0, "retries": 0, "abandoned": 0}
        self._failing = False
        self._sequence = 0          # numbers calls in the order they begin
        self._succeeded = -1        # the number of the latest-begun call that succeeded
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._pending: list[_Entry] = []
        self._commands: dict[tuple[Any, ...], tuple[list[str], list[Any], bytes]] = {}
        self._pending_deadline = math.inf
        self._flush_scheduled = False
        self._flushing: set[asyncio.Task[Any]] = set()
        #: Tests only: milliseconds to count with instead of Redis's TIME (None: Redis's clock).
        self.clock_ms: Callable[[], int] | None = None

    # --- the script ----------------------------------------------------------

    async def load_script(self) -> None:
        """Load the script (by SHA1 from then on); raises LimiterUnavailable when Redis cannot be reached."""
        try:
            await self._bounded(self.client.script_load(SCRIPT), self.timeout * 4)
        except Exception as exc:  # every failure of the client is an unavailable Redis
            raise LimiterUnavailable(_describe(exc)) from None

    async def _direct(self, keys: list[str], args: list[Any]) -> list[int]:
        client = self.client
        try:
            answer: list[int] = await client.evalsha(SHA, len(keys), *keys, *args)
        except NoScriptError:
            self.stats["script_loads"] += 1
            answer = await client.eval(SCRIPT, len(keys), *keys, *args)
        return answer

    def _queue(self, keys: list[str], args: list[Any], command: bytes | None, deadline: float,
               shared: bool) -> asyncio.Future[Any]:
        """The future of one script call, sent with the other calls of this event-loop turn.

        Calls queued in the same turn go out together in one batch (one write, one
        connection, one round trip): each is still its own atomic script. A batch is
        bounded by the earliest deadline among its calls. A retry (``shared`` False)
        goes out alone: its shorter budget must not cut a fresh batch short.
        """
        if command is None:
            command = encode_evalsha(keys, args)
        self.stats["redis_calls"] += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        entry = (command, keys, args, future)
        if not shared:
            self._start_batch([entry], deadline)
            return future
        self._pending.append(entry)
        if deadline < self._pending_deadline:
            self._pending_deadline = deadline
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_pending)
        return future

    def _flush_pending(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        deadline, self._pending_deadline = self._pending_deadline, math.inf
        self._start_batch(batch, deadline)

    def _start_batch(self, batch: list[_Entry], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._flush(batch))
        # At the deadline the callers are answered (TimeoutError) and the batch is cancelled, releasing its
        # connection instead of running on (and charging counters for calls already answered by the fail
        # mode). The callers never wait for the cancelled batch's clean-up, however long it takes.
        timer = loop.call_at(deadline, self._expire, batch, task)
        self._flushing.add(task)
        task.add_done_callback(lambda done: self._batch_done(done, batch, timer))

    def _expire(self, batch: list[_Entry], task: asyncio.Task[None]) -> None:
        for *_, future in batch:
            if not future.done():
                future.set_exception(TimeoutError(f"no answer within {self.timeout:g}s"))
        if not task.done():
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)

    def _batch_done(self, task: asyncio.Task[None], batch: list[_Entry], timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        self._flushing.discard(task)
        _consume(task)
        for *_, future in batch:  # whatever ended the batch (a bug, a cancelled task), no caller waits forever
            if not future.done():
                future.set_exception(RuntimeError("the batch ended without an answer"))

    async def _flush(self, batch: list[_Entry]) -> None:
        try:
            replies = await exchange(self.client.connection_pool, [command for command, *_ in batch])
        except Exception as exc:  # handed to every caller, who decides
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, keys, args, future), reply in zip(batch, replies):
            if isinstance(reply, NoScriptError):  # a restarted or flushed Redis: run it in full (loads it)
                try:
                    reply = await self._direct(keys, args)
                except Exception as exc:
                    reply = exc
            if future.done():
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _bounded(self, call: Any, budget: float) -> Any:
        """Await ``call`` (a coroutine) for at most ``budget`` seconds, however long its clean-up takes."""
        task = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait((task,), timeout=max(budget, 0.0))
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            self.stats["abandoned"] += 1
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            task.add_done_callback(_consume)
            raise TimeoutError(f"no answer within {budget:g}s")
        return task.result()

    async def _cluster_call(self, keys: list[str], args: list[Any]) -> list[int]:
        self.stats["redis_calls"] += 1
        return await self._direct(keys, args)

    async def _attempt(self, keys: list[str], args: list[Any], command: bytes | None, deadline: float,
                       first: bool) -> list[int]:
        if self.cluster:  # the cluster client may take long to clean up a cancelled call: never wait for it
            budget = deadline - asyncio.get_running_loop().time()
            answer: list[int] = await self._bounded(self._cluster_call(keys, args), budget)
            return answer
        # The batch completes the future by the deadline (an answer, an error or a TimeoutError).
        return await self._queue(keys, args, command, deadline, first)  # type: ignore[no-any-return]

    async def _call(self, keys: list[str], args: list[Any], command: bytes | None = None) -> list[int]:
        now = self._monotonic()
        if now < self._down_until:
            self.stats["short_circuited"] += 1
            raise LimiterUnavailable("redis is unavailable (retrying shortly)")
        self._sequence += 1
        number = self._sequence
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        retried = False
        while True:
            try:
                result = await self._attempt(keys, args, command, deadline, not retried)
                break
            except Exception as exc:  # every failure of the client answers by the fail mode
                if not retried and not isinstance(exc, _TIMEOUTS) and deadline - loop.time() > 0:
                    retried = True  # most likely a pooled connection a restart left dead: once more
                    self.stats["retries"] += 1
                    continue
                self._failed(exc, number)
                raise LimiterUnavailable(_describe(exc)) from None
        if number > self._succeeded:
            self._succeeded = number
        if self._failing:
            self._failing = False
            self.stats["recoveries"] += 1
            log.warning("redis answers again")
        return result

    def _failed(self, exc: BaseException, number: int) -> None:
        self.stats["errors"] += 1
        if self._succeeded > number:
            return  # a call begun after this one has succeeded: Redis answers, this was a stale connection
        self._down_until = self._monotonic() + self.retry_interval
        if not self._failing:
            log.warning("redis call failed (%s); answering by the fail mode", _describe(exc))
        self._failing = True

    async def close(self) -> None:
        """Cancel calls and batches abandoned after their timeout (they were still cleaning up)."""
        for task in list(self._abandoned):
            task.cancel()
        if self._abandoned:
            await asyncio.wait(list(self._abandoned), timeout=1.0)

    # --- allocation ------------------------------------------------------------

    def _args(self, counters: Sequence[Counter], best_effort: bool, independent: bool, dedup: bool,
              amounts: Sequence[int] | None = None) -> list[Any]:
        args: list[Any] = [len(counters), int(best_effort), int(independent), self.dedup_ms if dedup else 0]
        for i, c in enumerate(counters):
            if c.window == 0:
                args += [ALLOCATION_MODE, c.max_amount, 0, self.idle_ttl_ms]
            else:
                args += [_CODES[c.algorithm], c.max_amount, max(1, round(c.window * 1000)),
                         max(1, round(c.bucket * 1000))]
            args.append(c.amount if amounts is None else amounts[i])
        if self.clock_ms is not None:
            args.append(self.clock_ms())
        return args

    async def _script(self, counters: Sequence[Counter], *, best_effort: bool = False, independent: bool = False,
                      dedup_id: str = "", amounts: Sequence[int] | None = None) -> list[Allocation]:
        if len(counters) == 1 and not dedup_id and amounts is None and self.clock_ms is None:
            # The hot path: the same counters are charged again and again, so their calls are encoded once.
            c = counters[0]
            memo = (c.id, c.amount, c.max_amount, c.window, c.bucket, c.algorithm, best_effort, independent)
            call = self._commands.get(memo)
            if call is None:
                keys = [counter_key(self.prefix, c)]
                args = self._args(counters, best_effort, independent, False)
                call = (keys, args, encode_evalsha(keys, args))
                if len(self._commands) >= _COMMANDS_MAX:
                    self._commands.clear()
                self._commands[memo] = call
            raw = await self._call(*call)
        else:
            keys = [counter_key(self.prefix, c) for c in counters]
            if dedup_id:
                keys.append(dedup_key(self.prefix, counters[0], dedup_id))
            raw = await self._call(keys, self._args(counters, best_effort, independent, bool(dedup_id), amounts))
        replayed = bool(raw[-1])
        out = []
        for i in range(len(counters)):
            granted, remaining, reset_ms, fits = raw[4 * i: 4 * i + 4]
            out.append(Allocation(int(granted), int(remaining), int(reset_ms) / 1000, bool(fits), replayed))
        return out

    def exhausted_for(self, counter_id: str) -> float:
        """Seconds a counter is known to stay exhausted (0: unknown); counts a fast-path answer when > 0."""
        until = self._exhausted.get(counter_id)
        if until is None or not self.fast_path:
            return 0.0
        left = until - self._monotonic()
        if left <= 0:
            return 0.0
        self.stats["fast_path"] += 1
        return left

    def _cached(self, counter: Counter, now: float) -> float:
        until = self._exhausted.get(counter.id)
        if until is None:
            return 0.0
        if until <= now:
            del self._exhausted[counter.id]
            return 0.0
        return until - now

    def _remember(self, counters: Sequence[Counter], answers: Sequence[Allocation]) -> None:
        now = self._monotonic()
        for counter, answer in zip(counters, answers):
            if counter.window > 0 and counter.amount > 0 and not answer.fits and answer.remaining == 0 \
                    and answer.reset > 0:
                if len(self._exhausted) >= _FAST_PATH_MAX:
                    self._exhausted = {k: v for k, v in self._exhausted.items() if v > now}
                    if len(self._exhausted) >= _FAST_PATH_MAX:
                        continue
                self._exhausted[counter.id] = now + answer.reset

    async def allocate(self, counters: Sequence[Counter], *, best_effort: bool = False, dedup_id: str = "",
                       independent: bool = False) -> list[Allocation]:
        """Charge ``counters`` (see :mod:`adapters._quota.core`); raises LimiterUnavailable when Redis fails."""
        if any(c.amount < 0 for c in counters):
            independent = True
        if dedup_id and len(counters) != 1:
            dedup_id = ""
        cached: dict[int, Allocation] = {}
        if self.fast_path and not dedup_id:
            now = self._monotonic()
            for i, counter in enumerate(counters):
                if counter.amount > 0 and counter.window > 0:
                    left = self._cached(counter, now)
                    if left > 0:
                        cached[i] = Allocation(0, 0, left, False, cached=True)
        if cached:
            self.stats["fast_path"] += len(cached)
            rest = [i for i in range(len(counters)) if i not in cached]
            if not rest:
                return [cached[i] for i in range(len(counters))]
            others = [counters[i] for i in rest]
            if independent:
                answers = await self._grouped(others, best_effort, True, "")
            else:
                # The call is over a limit already: report the others without charging them.
                answers = await self._grouped(others, False, True, "", peek=True)
            by_index = dict(zip(rest, answers))
            merged = [cached[i] if i in cached else by_index[i] for i in range(len(counters))]
            self._remember(others, answers)
            return merged
        answers = await self._grouped(list(counters), best_effort, independent, dedup_id)
        self._remember(counters, answers)
        return answers

    async def _grouped(self, counters: list[Counter], best_effort: bool, independent: bool, dedup_id: str,
                       peek: bool = False) -> list[Allocation]:
        amounts = [0] * len(counters) if peek else None
        if not self.cluster or len(counters) == 1:
            answers = await self._script(counters, best_effort=best_effort, independent=independent,
                                         dedup_id=dedup_id, amounts=amounts)
            return self._peeked(counters, answers) if peek else answers
        slots: dict[int, list[int]] = {}
        for i, counter in enumerate(counters):
            slots.setdefault(key_slot(counter_key(self.prefix, counter).encode()), []).append(i)
        groups = list(slots.values())
        if len(groups) == 1:
            answers = await self._script(counters, best_effort=best_effort, independent=independent,
                                         amounts=amounts)
            return self._peeked(counters, answers) if peek else answers
        if not independent and not peek:
            # Counters in several slots cannot be charged in one atomic script: look first, then charge
            # only when all fit (a race between the two steps can over-count, never over-grant).
            looked = await self._gather(counters, groups, False, True, [0] * len(counters))
            fits = [a.remaining >= c.amount for a, c in zip(looked, counters)]
            if not all(fits):
                return [Allocation(0, a.remaining, a.reset, f) for a, f in zip(looked, fits)]
        answers = await self._gather(counters, groups, best_effort, independent, amounts)
        return self._peeked(counters, answers) if peek else answers

    async def _gather(self, counters: list[Counter], groups: list[list[int]], best_effort: bool, independent: bool,
                      amounts: list[int] | None) -> list[Allocation]:
        results = await asyncio.gather(*(
            self._script([counters[i] for i in group], best_effort=best_effort, independent=independent,
                         amounts=None if amounts is None else [amounts[i] for i in group])
            for group in groups))
        out: list[Allocation | None] = [None] * len(counters)
        for group, answers in zip(groups, results):
            for i, answer in zip(group, answers):
                out[i] = answer
        return out  # type: ignore[return-value]

    async def count(self, counters: Sequence[Counter], stop_when_over: bool = False) -> list[tuple[int, float]]:
        """Count as envoyproxy/ratelimit does (fixed windows, charged past the limit): (count after, reset) each.

        ``stop_when_over``: charge only when no counter would go over its limit, or the
        counters that would (its ``STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT``). Atomic
        within one hash slot; across Cluster slots it reads first, then charges (as the
        reference's two pipelines do). Raises LimiterUnavailable when Redis fails.
        """
        groups: list[list[int]] = [list(range(len(counters)))]
        if self.cluster and len(counters) > 1:
            slots: dict[int, list[int]] = {}
            for i, counter in enumerate(counters):
                slots.setdefault(key_slot(counter_key(self.prefix, counter).encode()), []).append(i)
            groups = list(slots.values())
        amounts = [c.amount for c in counters]
        code = COUNT_STOP_WHEN_OVER if stop_when_over else COUNT_ALWAYS
        if stop_when_over and len(groups) > 1:
            looked = await self._count_groups(counters, groups, COUNT_ALWAYS, [0] * len(counters))
            over = [after + c.amount > c.max_amount for (after, _), c in zip(looked, counters)]
            if any(over):
                amounts = [a if o else 0 for a, o in zip(amounts, over)]
            code = COUNT_ALWAYS
        return await self._count_groups(counters, groups, code, amounts)

    async def _count_groups(self, counters: Sequence[Counter], groups: list[list[int]], code: int,
                            amounts: list[int]) -> list[tuple[int, float]]:
        async def one(group: list[int]) -> list[int]:
            keys = [counter_key(self.prefix, counters[i]) for i in group]
            args: list[Any] = [len(group), 0, 1, 0]
            for i in group:
                args += [code, counters[i].max_amount, max(1, round(counters[i].window * 1000)), 1, amounts[i]]
            return await self._call(keys, args)

        results = await asyncio.gather(*(one(group) for group in groups))
        out: list[tuple[int, float]] = [(0, 0.0)] * len(counters)
        for group, raw in zip(groups, results):
            for j, i in enumerate(group):
                remaining, reset_ms = int(raw[4 * j + 1]), int(raw[4 * j + 2])
                out[i] = (counters[i].max_amount - remaining, reset_ms / 1000)
        return out

    @staticmethod
    def _peeked(counters: Sequence[Counter], answers: Sequence[Allocation]) -> list[Allocation]:
        return [Allocation(0, a.remaining, a.reset, a.remaining >= c.amount) for c, a in zip(counters, answers)]
