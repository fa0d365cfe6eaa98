"""The ``redisquota`` adapter: quotas counted in Redis or a Redis Cluster, shared by every sidecar.

What it does
    Answers ``quota`` calls (template ``quota``) from counters in Redis, so several
    processes and hosts share one limit, as Mixer's redisquota did. Each call runs
    one atomic Lua script (loaded once, called by SHA1, reloaded on ``NOSCRIPT``)
    that reads the time from Redis (``TIME``), so hosts' clocks do not matter.
    Calls made in the same event-loop turn go out together (single server): one
    write on one pooled connection, replies read in order (parsed by hiredis, which
    the ``redis`` extra installs); each is still its own atomic script.
    It can also back the Envoy rate-limit service (``settings.rateLimit.handler``).

Params (Mixer's, plus a few of ours)
    ``quotas[]``                 as Mixer's: ``name``, ``maxAmount``, ``validDuration``,
                                 ``rateLimitAlgorithm`` (FIXED_WINDOW, the default, Mixer's:
                                 the window starts at its first charge and lasts
                                 ``validDuration``; ROLLING_WINDOW; or ours,
                                 ALIGNED_FIXED_WINDOW, aligned to the clock as
                                 envoyproxy/ratelimit's units), ``bucketDuration`` (rolling
                                 granularity, default a tenth of the window), ``overrides[]``
                                 (first match wins; each needs dimensions, as in Mixer; ours:
                                 an own ``validDuration``). ``validDuration: 0`` is allocation
                                 mode (ours: no window; the counter expires after
                                 ``allocationIdleTimeout`` without changes). A negative amount
                                 releases (in a window, the newest grants first).
    ``redisServerUrl``           ``host:port`` (Mixer's form), ``redis://[user:pass@]host:port[/db]``,
                                 ``rediss://...`` (TLS) or ``unix:///path/to/redis.sock``.
    ``connectionPoolSize``       connections per Redis server (default and 0: 10). A single
                                 server's calls of one event-loop turn share one connection;
                                 beyond the pool, they wait for a free one (within ``timeout``).
    ``cluster``                  the URL is a seed node of a Redis Cluster (default false).
    ``failMode``                 when Redis cannot answer: ``CLOSED`` (default) denies with
                                 ``UNAVAILABLE``; ``OPEN`` grants the amount asked (valid
                                 duration 0). Never ``RESOURCE_EXHAUSTED``.
    ``timeout``                  how long a call may take (default 500ms); calls sent together
                                 are all answered by the earliest of their deadlines.
    ``retryInterval``            after a failure, calls answer by the fail mode at once for
                                 this long (default 500ms), then Redis is tried again; the
                                 client reconnects by itself, no restart needed.
    ``localOverLimitCache``      answer counters known to be exhausted for the rest of their
                                 window without Redis (default true).
    ``minDeduplicationDuration`` how long a deduplication id is remembered at least (default 1s;
                                 at least until the window's end).
    ``keyPrefix``                prefix of every key (default ``quota:``).

Keys
    ``<keyPrefix>{<quota>|<dim>=<value>...}:<kind>`` with dimension values escaped and long
    ids hashed; the braces are a hash tag, so all keys of a counter sit in one slot.
    Every key has a TTL (the window's end, the rolling window, the idle timeout).

Fail mode and counters
    ``handler.stats`` counts calls, Redis calls, fast-path answers, errors, short-circuited
    calls, fail-open grants, fail-closed denials and script reloads.

Cacheability
    Quota results are never cached by the host.

Limits
    A call that does not fit is not charged (counters never pass their limit). The
    fast path is per process and skipped by calls with a deduplication id. On a
    cluster, rate-limit counters in different slots are checked, then charged, in
    two steps: a race may over-count (deny early), never over-grant.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from adapters._quota.core import LimiterUnavailable
from adapters._quota.handler import QuotaCalls
from adapters._quota.params import Algorithm, QuotaParams, QuotaTable, quota_limit_errors, validate_quotas
from adapters._quota.redis_limiter import RedisLimiter
from policy import (
    Adapter,
    AdapterError,
    BuildContext,
    Code,
    FieldError,
    Handler,
    QuotaArgs,
    QuotaResult,
    RateLimitAnswer,
    RateLimitCounter,
    Status,
    hookimpl,
    param,
)

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_POOL_SIZE = 10


class RedisFailMode(enum.Enum):
    """What calls answer when Redis cannot: OPEN grants, CLOSED denies with UNAVAILABLE."""

    OPEN = "OPEN"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class RedisQuotaParams:
    """Params of the ``redisquota`` adapter."""

    redis_server_url: str = param(doc="host:port, redis://, rediss:// or unix:// URL of Redis (a seed node "
                                      "when cluster is true).")
    quotas: list[QuotaParams] = param(default_factory=list, doc="The quotas this handler counts.")
    connection_pool_size: int = param(DEFAULT_POOL_SIZE, doc="Connections per Redis server (0: the default, 10).")
    cluster: bool = param(False, doc="Redis is a Redis Cluster.")
    fail_mode: RedisFailMode = param(RedisFailMode.CLOSED, doc="OPEN grants, CLOSED denies (UNAVAILABLE) when "
                                                                 "Redis cannot answer.")
    timeout: dt.timedelta = param(dt.timedelta(milliseconds=500), doc="How long a call to Redis may take.")
    retry_interval: dt.timedelta = param(dt.timedelta(milliseconds=500),
                                         doc="After a failure, answer by the fail mode at once for this long.")
    local_over_limit_cache: bool = param(True, doc="Answer counters known to be exhausted without Redis.")
    min_deduplication_duration: dt.timedelta = param(dt.timedelta(seconds=1),
                                                     doc="How long a deduplication id is remembered at least.")
    allocation_idle_timeout: dt.timedelta = param(dt.timedelta(hours=1),
                                                  doc="TTL of an allocation-mode counter after its last change.")
    key_prefix: str = param("quota:", doc="Prefix of every Redis key.")


def normalize_url(url: str) -> str:
    """Mixer's ``host:port`` becomes ``redis://host:port``; URLs with a scheme are kept."""
    url = url.strip()
    return url if "://" in url else f"redis://{url}"


def _url_errors(params: RedisQuotaParams) -> Iterator[FieldError]:
    url = normalize_url(params.redis_server_url)
    if not params.redis_server_url.strip():
        yield FieldError("redisServerUrl", "must not be empty")
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        yield FieldError("redisServerUrl", f"not a valid URL: {params.redis_server_url!r} ({exc})")
        return
    if parts.scheme not in SCHEMES:
        yield FieldError("redisServerUrl", f"scheme must be one of {', '.join(SCHEMES)}, got {parts.scheme!r}")
    elif parts.scheme == "unix":
        if not parts.path:
            yield FieldError("redisServerUrl", "a unix:// URL needs a socket path")
        if params.cluster:
            yield FieldError("cluster", "a Redis Cluster is reached over TCP, not a unix socket")
    elif not parts.hostname:
        yield FieldError("redisServerUrl", f"no host in {params.redis_server_url!r}")
    elif port is None and "://" not in params.redis_server_url:
        yield FieldError("redisServerUrl", f"expected host:port, got {params.redis_server_url!r}")


def make_client(params: RedisQuotaParams) -> Any:
    """A ``redis.asyncio`` client for the params (no connection is made until the first call)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    url = normalize_url(params.redis_server_url)
    timeout = params.timeout.total_seconds()
    # One immediate retry inside the client (it reconnects the same pooled connection), not its default
    # of 10 with backoff up to 1s, which outlives our timeout and holds pooled connections meanwhile.
    if params.cluster:
        return aioredis.RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            max_connections=(params.connection_pool_size or DEFAULT_POOL_SIZE) * 64, retry=Retry(NoBackoff(), 1))
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=params.connection_pool_size or DEFAULT_POOL_SIZE, timeout=timeout,
        socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1))
    return aioredis.Redis(connection_pool=pool)


class RedisQuotaHandler(Handler):
    """Counts quotas in Redis (see the module docstring)."""

    def __init__(self, params: RedisQuotaParams, context: BuildContext) -> None:
        self.calls = QuotaCalls(context.handler, QuotaTable(params.quotas, Algorithm.FIXED_WINDOW))
        self.fail_open = params.fail_mode is RedisFailMode.OPEN
        self.logger = context.logger
        self.client = make_client(params)
        self.limiter = RedisLimiter(
            self.client, cluster=params.cluster, prefix=params.key_prefix,
            idle_ttl=params.allocation_idle_timeout.total_seconds(),
            min_dedup=params.min_deduplication_duration.total_seconds(),
            timeout=params.timeout.total_seconds(), retry_interval=params.retry_interval.total_seconds(),
            fast_path=params.local_over_limit_cache, monotonic=context.clock.monotonic)
        self.stats = {"calls": 0, "granted": 0, "exhausted": 0, "deduplicated": 0, "fail_open": 0,
                      "fail_closed": 0}
        self._exhausted: dict[int, Status] = {}

    async def start(self) -> None:
        """Load the script; an unreachable Redis is logged, not fatal (the fail mode answers meanwhile)."""
        try:
            await self.limiter.load_script()
        except LimiterUnavailable as exc:
            self.logger.warning("redis is not reachable yet (%s); answering by failMode until it is", exc)

    async def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        """Charge the instance's counter in Redis (see the module docstring)."""
        stats = self.stats
        stats["calls"] += 1
        if args.amount > 0 and not args.deduplication_id:
            hit = self.calls.cached(instance, args)
            if hit is not None:
                left = self.limiter.exhausted_for(hit[0])
                if left > 0:  # the over-limit fast path, inline: no Redis call
                    stats["exhausted"] += 1
                    limit = hit[1].max_amount
                    status = self._exhausted.get(limit)
                    if status is None:
                        status = self._exhausted[limit] = Status(
                            Code.RESOURCE_EXHAUSTED, f"quota exhausted: {limit} of {limit} in use")
                    return QuotaResult(0, 0.0, status, remaining=0, limit=limit)  # Mixer: denials get 0
        counter = self.calls.counter(instance, args)
        if isinstance(counter, QuotaResult):
            return counter
        if args.amount == 0:
            return QuotaResult(0, 0.0)
        try:
            (allocation,) = await self.limiter.allocate((counter,), best_effort=args.best_effort,
                                                        dedup_id=args.deduplication_id)
        except LimiterUnavailable as exc:
            if self.fail_open:
                stats["fail_open"] += 1
                return QuotaResult(max(args.amount, 0), 0.0)
            stats["fail_closed"] += 1
            return QuotaResult(0, 0.0, Status(Code.UNAVAILABLE, str(exc)))
        if allocation.deduplicated:
            stats["deduplicated"] += 1
        stats["granted" if allocation.granted > 0 or args.amount < 0 else "exhausted"] += 1
        return self.calls.result(counter, allocation)

    async def rate_limit_count(self, counters: Sequence[RateLimitCounter],
                               stop_when_over: bool = False) -> list[RateLimitAnswer]:
        """Count rate-limit service counters as envoyproxy/ratelimit does: (count after, seconds to reset) each.

        When Redis cannot answer: OPEN answers every counter as within its limit (a
        count of 0, reset unknown); CLOSED raises AdapterError(UNAVAILABLE).
        """
        try:
            return await self.limiter.count(self.calls.rate_limit_counters(counters), stop_when_over)
        except LimiterUnavailable as exc:
            if self.fail_open:
                self.stats["fail_open"] += 1
                return [(0, 0.0) for _ in counters]
            self.stats["fail_closed"] += 1
            raise AdapterError(Code.UNAVAILABLE, str(exc)) from None

    async def close(self) -> None:
        """Close the Redis connections (after the limiter's abandoned calls)."""
        await self.limiter.close()
        try:
            await self.client.aclose()
        except Exception as exc:  # a dead connection's close failing must not fail a reload or shutdown
            self.logger.warning("closing the redis client: %s: %s", type(exc).__name__, exc)


class RedisQuotaAdapter(Adapter[RedisQuotaParams]):
    """Quotas counted in Redis or a Redis Cluster (Mixer's redisquota)."""

    #: Unchanged handlers are kept across config reloads, so their counters are too.
    keep_across_reloads = True
    name = "redisquota"
    description = "Redis-based quotas: one atomic Lua script per call, fixed or rolling windows, Redis Cluster."
    templates = ("quota",)
    Params = RedisQuotaParams

    @classmethod
    def validate(cls, params: RedisQuotaParams) -> Iterator[FieldError]:
        """Check quotas, the URL, the pool size and the durations."""
        yield from validate_quotas(params.quotas, Algorithm.FIXED_WINDOW, redis_rules=True)
        yield from _url_errors(params)
        if params.connection_pool_size < 0:  # 0: the default size, as in Mixer
            yield FieldError("connectionPoolSize", f"must be >= 0, got {params.connection_pool_size}")
        for name, value in (("timeout", params.timeout), ("retryInterval", params.retry_interval),
                            ("minDeduplicationDuration", params.min_deduplication_duration),
                            ("allocationIdleTimeout", params.allocation_idle_timeout)):
            if value.total_seconds() <= 0:
                yield FieldError(name, "must be > 0")
        if "{" in params.key_prefix or "}" in params.key_prefix:
            yield FieldError("keyPrefix", "must not contain braces (they would change the hash tag)")

    @classmethod
    def validate_instances(cls, params: Any, instances: Mapping[str, str]) -> Iterator[FieldError]:
        """Every quota instance routed here needs a limit in ``quotas`` (Mixer refused the handler)."""
        yield from quota_limit_errors(params.quotas, instances)

    @classmethod
    def build(cls, params: RedisQuotaParams, context: BuildContext) -> Handler:
        """Build a handler with a (lazily connecting) Redis client."""
        return RedisQuotaHandler(params, context)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the redisquota adapter."""
    registry.add(RedisQuotaAdapter)
