"""Quota params shared by memquota and redisquota: quotas, overrides, and their checks.

The shape is Mixer's (``mixer/adapter/memquota/config`` and ``.../redisquota/config``)::

    quotas:
      - name: requestcount.quota.istio-system   # the quota instance it limits
        maxAmount: 500
        validDuration: 1s                       # 0: allocation mode (no window)
        bucketDuration: 100ms                   # rolling window granularity
        rateLimitAlgorithm: ROLLING_WINDOW      # or FIXED_WINDOW (clock aligned)
        overrides:                              # first match wins
          - dimensions: {destination: reviews}
            maxAmount: 1
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policy import FieldError, param

#: The most buckets a rolling window may have (bounds memory and script work per counter).
MAX_BUCKETS = 1000


class Algorithm(enum.Enum):
    """How a windowed quota counts: a clock-aligned fixed window or a bucketed rolling window."""

    FIXED_WINDOW = "FIXED_WINDOW"
    ROLLING_WINDOW = "ROLLING_WINDOW"


@dataclass(frozen=True)
class Override:
    """A different limit for instances whose dimensions match all of ``dimensions``."""

    dimensions: dict[str, str] = param(doc="Dimension values an instance must have (all of them).")
    max_amount: int = param(doc="The limit for matching instances.")


@dataclass(frozen=True)
class QuotaParams:
    """One quota's limit: how much, over which window, counted how."""

    name: str = param(doc="The quota instance name (as rules and requests refer to it).")
    max_amount: int = param(doc="The most that may be allocated in a window (or in total, in allocation mode).")
    valid_duration: dt.timedelta = param(
        dt.timedelta(0), doc="The window; 0 means allocation mode (no window; a negative amount releases).")
    bucket_duration: dt.timedelta | None = param(
        None, doc="Rolling window granularity (default: a tenth of the window); must divide the window.")
    rate_limit_algorithm: Algorithm | None = param(
        None, doc="FIXED_WINDOW (aligned to the clock) or ROLLING_WINDOW; default is the adapter's.")
    overrides: list[Override] = param(default_factory=list, doc="Per-dimension limits; the first match wins.")


@dataclass(frozen=True)
class Limit:
    """A resolved limit for one call: the counter's max, window, bucket (seconds) and algorithm."""

    max_amount: int
    window: float
    bucket: float
    algorithm: Algorithm
    override: int  # index of the override that matched, -1 for the quota's own limit


def validate_quotas(quotas: Sequence[QuotaParams], default: Algorithm) -> Iterator[FieldError]:
    """Yield field-scoped errors for quota definitions (names, amounts, windows, buckets)."""
    seen: set[str] = set()
    for i, quota in enumerate(quotas):
        at = f"quotas[{i}]"
        if not quota.name:
            yield FieldError(f"{at}.name", "must not be empty")
        elif quota.name in seen:
            yield FieldError(f"{at}.name", f"quota {quota.name!r} is defined twice")
        seen.add(quota.name)
        if quota.max_amount < 0:
            yield FieldError(f"{at}.maxAmount", f"must not be negative, got {quota.max_amount}")
        window = quota.valid_duration.total_seconds()
        algorithm = quota.rate_limit_algorithm or default
        if window < 0.001 and window != 0:
            yield FieldError(f"{at}.validDuration", f"must be 0 (allocation mode) or at least 1ms, got {window}s")
        if quota.bucket_duration is not None and window > 0:
            bucket = quota.bucket_duration.total_seconds()
            if algorithm is Algorithm.ROLLING_WINDOW:
                if bucket < 0.001 or bucket > window:
                    yield FieldError(f"{at}.bucketDuration",
                                     f"must be between 1ms and validDuration ({window:g}s), got {bucket:g}s")
                else:
                    count = window / bucket
                    if abs(count - round(count)) > 1e-6:
                        yield FieldError(f"{at}.bucketDuration",
                                         f"must divide validDuration ({window:g}s) evenly, got {bucket:g}s")
                    elif round(count) > MAX_BUCKETS:
                        yield FieldError(f"{at}.bucketDuration",
                                         f"gives {round(count)} buckets; at most {MAX_BUCKETS} are allowed")
        for j, override in enumerate(quota.overrides):
            if override.max_amount < 0:
                yield FieldError(f"{at}.overrides[{j}].maxAmount", f"must not be negative, got {override.max_amount}")
            if not override.dimensions:
                yield FieldError(f"{at}.overrides[{j}].dimensions", "must name at least one dimension")


def _matches(wanted: Mapping[str, str], dimensions: Mapping[str, Any]) -> bool:
    for key, value in wanted.items():
        if key not in dimensions or dimension_text(dimensions[key]) != value:
            return False
    return True


def dimension_text(value: Any) -> str:
    """A dimension value as text, the way Mixer compared them (``adapter.StringEquals``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class QuotaTable:
    """The quotas of one handler, by name, resolving a call's limit (overrides: first match wins)."""

    def __init__(self, quotas: Sequence[QuotaParams], default: Algorithm) -> None:
        self._quotas = {q.name: q for q in quotas}
        # Mixer documents name instances ``name.kind.namespace``; a quota may use either form.
        for q in quotas:
            self._quotas.setdefault(q.name.split(".", 1)[0], q)
        self._default = default

    def __contains__(self, name: object) -> bool:
        return name in self._quotas

    def limit(self, name: str, dimensions: Mapping[str, Any]) -> Limit | None:
        """The limit for quota ``name`` and these dimensions; None when the quota is unknown."""
        quota = self._quotas.get(name)
        if quota is None:
            quota = self._quotas.get(name.split(".", 1)[0])
            if quota is None:
                return None
        window = quota.valid_duration.total_seconds()
        algorithm = quota.rate_limit_algorithm or self._default
        if quota.bucket_duration is not None and algorithm is Algorithm.ROLLING_WINDOW:
            bucket = quota.bucket_duration.total_seconds()
        else:
            bucket = window / 10 if algorithm is Algorithm.ROLLING_WINDOW else window
        for index, override in enumerate(quota.overrides):
            if _matches(override.dimensions, dimensions):
                return Limit(override.max_amount, window, bucket, algorithm, index)
        return Limit(quota.max_amount, window, bucket, algorithm, -1)
