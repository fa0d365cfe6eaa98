"""Quota params shared by memquota and redisquota: quotas, overrides, and their checks.

The shape is Mixer's (``mixer/adapter/memquota/config`` and ``.../redisquota/config``)::

    quotas:
      - name: requestcount.quota.istio-system   # the quota instance it limits
        maxAmount: 500
        validDuration: 1s                       # 0: allocation mode (no window)
        bucketDuration: 100ms                   # rolling window granularity (default: see below)
        rateLimitAlgorithm: ROLLING_WINDOW      # or FIXED_WINDOW, ALIGNED_FIXED_WINDOW
        overrides:                              # first match wins
          - dimensions: {destination: reviews}
            maxAmount: 1
            validDuration: 5s                   # the override's own window (see Override)

An override without dimensions matches every call (memquota, as in Mixer).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policy import FieldError, param

#: The most buckets a rolling window may have (bounds memory and script work per counter).
MAX_BUCKETS = 1000


class Algorithm(enum.Enum):
    """How a windowed quota counts.

    ``FIXED_WINDOW``: Mixer's redisquota fixed window, which starts at the first charge
    and lasts ``validDuration``. ``ALIGNED_FIXED_WINDOW``: a window aligned to multiples
    of ``validDuration`` since the epoch (envoyproxy/ratelimit's units). ``ROLLING_WINDOW``:
    buckets of ``bucketDuration``. memquota counts both fixed kinds clock-aligned.
    """

    FIXED_WINDOW = "FIXED_WINDOW"
    ROLLING_WINDOW = "ROLLING_WINDOW"
    ALIGNED_FIXED_WINDOW = "ALIGNED_FIXED_WINDOW"


@dataclass(frozen=True)
class Override:
    """A different limit for instances whose dimensions match all of ``dimensions``."""

    dimensions: dict[str, str] = param(
        default_factory=dict, doc="Dimension values an instance must have (all of them; none matches every call).")
    max_amount: int = param(0, doc="The limit for matching instances.")
    valid_duration: dt.timedelta | None = param(
        None, doc="The window for matching instances: memquota, as Mixer's, takes 0 (no window) when it is "
                  "omitted; redisquota takes the quota's.")


@dataclass(frozen=True)
class QuotaParams:
    """One quota's limit: how much, over which window, counted how."""

    name: str = param(doc="The quota instance name (as rules and requests refer to it).")
    max_amount: int = param(0, doc="The most that may be allocated in a window (or in total, in allocation mode).")
    valid_duration: dt.timedelta = param(
        dt.timedelta(0), doc="The window; 0 means allocation mode (no window; a negative amount releases).")
    bucket_duration: dt.timedelta | None = param(
        None, doc="Rolling window granularity (default: a tenth of the window); must divide the window.")
    rate_limit_algorithm: Algorithm | None = param(
        None, doc="FIXED_WINDOW, ALIGNED_FIXED_WINDOW or ROLLING_WINDOW (see Algorithm); default is the adapter's.")
    overrides: list[Override] = param(default_factory=list, doc="Per-dimension limits; the first match wins.")


@dataclass(frozen=True)
class Limit:
    """A resolved limit for one call: the counter's max, window, bucket (seconds) and algorithm."""

    max_amount: int
    window: float
    bucket: float
    algorithm: Algorithm
    override: int  # index of the override that matched, -1 for the quota's own limit
    valid: float = -1.0  # a grant's valid duration when it is not the window (-1)


def _bucket_errors(at: str, what: str, window: float, bucket: float, shorter: bool) -> Iterator[FieldError]:
    if shorter and bucket >= window:  # Mixer's redisquota: the window must be longer than a bucket
        yield FieldError(at, f"must be shorter than {what} ({window:g}s), got {bucket:g}s")
        return
    if bucket < 0.001 or bucket > window:
        yield FieldError(at, f"must be between 1ms and {what} ({window:g}s), got {bucket:g}s")
        return
    count = window / bucket
    if abs(count - round(count)) > 1e-6:
        yield FieldError(at, f"must divide {what} ({window:g}s) evenly, got {bucket:g}s")
    elif round(count) > MAX_BUCKETS:
        yield FieldError(at, f"gives {round(count)} buckets over {what}; at most {MAX_BUCKETS} are allowed")


def validate_quotas(quotas: Sequence[QuotaParams], default: Algorithm,
                    redis_rules: bool = False) -> Iterator[FieldError]:
    """Yield field-scoped errors for quota definitions (names, amounts, windows, buckets).

    :param redis_rules: also what Mixer's redisquota rejected (memquota accepted it): an
        override without dimensions or with a maxAmount of 0, a bucket as long as the window.
    """
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
        explicit_bucket = quota.bucket_duration is not None and algorithm is Algorithm.ROLLING_WINDOW
        if explicit_bucket and window > 0:
            yield from _bucket_errors(f"{at}.bucketDuration", "validDuration", window,
                                      quota.bucket_duration.total_seconds(),  # type: ignore[union-attr]
                                      redis_rules)
        for j, override in enumerate(quota.overrides):
            o_at = f"{at}.overrides[{j}]"
            if override.max_amount < 0 or (redis_rules and override.max_amount == 0):
                yield FieldError(f"{o_at}.maxAmount", f"must be {'> 0' if redis_rules else '>= 0'},"
                                                      f" got {override.max_amount}")
            if not override.dimensions and redis_rules:
                yield FieldError(f"{o_at}.dimensions", "must name at least one dimension")
            if override.valid_duration is None:
                continue
            o_window = override.valid_duration.total_seconds()
            if o_window < 0.001 and o_window != 0:
                yield FieldError(f"{o_at}.validDuration", f"must be 0 (allocation mode) or at least 1ms, got {o_window}s")
            elif explicit_bucket and o_window > 0:
                yield from _bucket_errors(f"{at}.bucketDuration", f"overrides[{j}].validDuration", o_window,
                                          quota.bucket_duration.total_seconds(),  # type: ignore[union-attr]
                                          redis_rules)


def quota_limit_errors(quotas: Sequence[QuotaParams], instances: Mapping[str, str]) -> Iterator[FieldError]:
    """Errors for routed quota instances that no quota of ``quotas`` limits (Mixer's build error)."""
    table = QuotaTable(quotas, Algorithm.FIXED_WINDOW)
    for name, template in sorted(instances.items()):
        if template == "quota" and not table.knows(name):
            known = ", ".join(q.name for q in quotas) or "none"
            yield FieldError("quotas", f"no limit is defined for quota instance {name} (quotas: {known})")


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


def tenth_of_window(window: float) -> float:
    """The default rolling bucket of redisquota: a tenth of the window."""
    return window / 10


def mixer_ticks(window: float) -> float:
    """The default rolling bucket of memquota: Mixer's 100 ms tick, or finer so it divides the window."""
    return window / max(10, math.ceil(window / 0.1 - 1e-9))


class QuotaTable:
    """The quotas of one handler, by name, resolving a call's limit (overrides: first match wins).

    :param default_bucket: the rolling bucket (seconds) of a window without ``bucketDuration``.
    """

    def __init__(self, quotas: Sequence[QuotaParams], default: Algorithm,
                 default_bucket: Callable[[float], float] = tenth_of_window,
                 override_window_required: bool = False, aligned_fixed: bool = False,
                 whole_seconds: bool = False) -> None:
        self._quotas = {q.name: q for q in quotas}
        # Mixer documents name instances ``name.kind.namespace``; a quota may use either form.
        for q in quotas:
            self._quotas.setdefault(q.name.split(".", 1)[0], q)
        self._default = default
        self._default_bucket = default_bucket
        # memquota (Mixer's Limit interface): an override's window is its own, 0 (no window) when
        # omitted; redisquota: an override without one keeps the quota's window.
        self._override_window_required = override_window_required
        self._aligned_fixed = aligned_fixed  # memquota: every fixed window is clock-aligned
        # memquota: a rolling window without bucketDuration counts whole seconds (Mixer rounded
        # validDuration up), while a grant stays valid for validDuration as configured.
        self._whole_seconds = whole_seconds

    def __contains__(self, name: object) -> bool:
        return name in self._quotas

    def knows(self, name: str) -> bool:
        """True when ``name`` (or its short form before the first dot) is a quota of this table."""
        return name in self._quotas or name.split(".", 1)[0] in self._quotas

    def limit(self, name: str, dimensions: Mapping[str, Any]) -> Limit | None:
        """The limit for quota ``name`` and these dimensions; None when the quota is unknown."""
        quota = self._quotas.get(name)
        if quota is None:
            quota = self._quotas.get(name.split(".", 1)[0])
            if quota is None:
                return None
        for index, override in enumerate(quota.overrides):
            if _matches(override.dimensions, dimensions):
                if override.valid_duration is not None:
                    window = override.valid_duration.total_seconds()
                elif self._override_window_required:
                    window = 0.0
                else:
                    window = quota.valid_duration.total_seconds()
                return self._limit(quota, override.max_amount, window, index)
        return self._limit(quota, quota.max_amount, quota.valid_duration.total_seconds(), -1)

    def _limit(self, quota: QuotaParams, max_amount: int, window: float, index: int) -> Limit:
        algorithm = self._algorithm(quota)
        if (self._whole_seconds and window > 0 and algorithm is Algorithm.ROLLING_WINDOW
                and quota.bucket_duration is None):
            counted = float(math.ceil(window - 1e-9))
            return Limit(max_amount, counted, self._bucket(quota, counted), algorithm, index, window)
        return Limit(max_amount, window, self._bucket(quota, window), algorithm, index)

    def _algorithm(self, quota: QuotaParams) -> Algorithm:
        algorithm = quota.rate_limit_algorithm or self._default
        if self._aligned_fixed and algorithm is Algorithm.FIXED_WINDOW:
            return Algorithm.ALIGNED_FIXED_WINDOW
        return algorithm

    def _bucket(self, quota: QuotaParams, window: float) -> float:
        if self._algorithm(quota) is not Algorithm.ROLLING_WINDOW:
            return window
        if quota.bucket_duration is not None:
            return quota.bucket_duration.total_seconds()
        return self._default_bucket(window) if window > 0 else 0.0
