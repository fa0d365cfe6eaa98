"""The limiter core shared by the memquota and redisquota adapters (internal to ``adapters``).

A *counter* is charged an amount against a limit over a window; a limiter charges
one or several counters at once (all or nothing, unless told they are independent)
and answers, per counter, what was granted, what remains and when the window
frees capacity. :mod:`adapters._quota.memory` keeps counters in process memory;
:mod:`adapters._quota.redis_limiter` keeps them in Redis (or a Redis Cluster),
one Lua script per call.
"""

from __future__ import annotations

from adapters._quota.core import Allocation, Counter, LimiterUnavailable
from adapters._quota.params import Algorithm, Limit, Override, QuotaParams, QuotaTable, validate_quotas

__all__ = [
    "Algorithm", "Allocation", "Counter", "Limit", "LimiterUnavailable", "Override", "QuotaParams",
    "QuotaTable", "validate_quotas",
]
