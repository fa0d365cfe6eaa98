"""What limiters charge and answer: :class:`Counter` in, :class:`Allocation` out.

Semantics every limiter follows:

- A counter with ``window == 0`` is in *allocation mode*: no window, the total in
  use is bounded by ``max_amount`` (Mixer's memquota with ``validDuration: 0``).
- A negative amount releases what is in use; in a window the newest grants are
  freed first (Mixer's ``rollingWindow.release``).
- A windowed counter is a clock-aligned fixed window (``ALIGNED_FIXED_WINDOW``:
  ``window`` seconds, aligned to multiples of ``window`` since the epoch, as
  envoyproxy/ratelimit aligns its units), a fixed window starting at its first charge
  (``FIXED_WINDOW``, Mixer's redisquota; Redis only) or a rolling window of
  ``window / bucket`` buckets.
- A call that does not fit is *not charged*: counters never exceed their limit,
  so a counter already over its limit is never incremented further.
- Several counters in one call are charged all or nothing (none is charged when
  one does not fit) unless ``independent``; ``best_effort`` grants what is left
  (single counter or independent ones).
- An amount of 0 is a query: nothing is charged, ``remaining`` and ``reset`` are
  reported.
- A deduplication id (single counter) makes a retried call answer what the first
  call was granted, without charging again.

The rate-limit service counts differently, as envoyproxy/ratelimit does (each
limiter's ``count``): fixed windows charged on every call, also past the limit,
answering the count after the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters._quota.params import Algorithm


class LimiterUnavailable(Exception):
    """The limiter's backend could not answer (Redis down, timed out, or out of capacity)."""


@dataclass(slots=True)  # not frozen: frozen dataclasses are slow to build on the hot path
class Counter:
    """One counter to charge.

    :param id: the counter's identifier (see :mod:`adapters._quota.keys`).
    :param amount: how much to charge (0 queries; negative releases).
    :param max_amount: the limit.
    :param window: the window in seconds; 0 is allocation mode.
    :param bucket: the rolling window's bucket in seconds (ignored for fixed windows).
    :param valid: how long a grant in a rolling window is valid, when not ``window`` (-1).
    """

    id: str
    amount: int
    max_amount: int
    window: float
    bucket: float = 0.0
    algorithm: Algorithm = Algorithm.ALIGNED_FIXED_WINDOW
    valid: float = -1.0


@dataclass(slots=True)  # not frozen: frozen dataclasses are slow to build on the hot path
class Allocation:
    """What one counter answered.

    :param granted: the amount granted (0 when it did not fit; for a release, the amount released).
    :param remaining: what is left in the window after this call.
    :param reset: seconds until the window frees capacity (fixed: until it ends); 0 without a window.
    :param fits: True when the requested amount fit (the call is within the limit).
    :param deduplicated: answered from an earlier call with the same deduplication id.
    :param cached: answered by the local over-limit cache, without asking the backend.
    """

    granted: int
    remaining: int
    reset: float
    fits: bool
    deduplicated: bool = False
    cached: bool = False
