"""Counters in process memory: fixed and rolling windows, allocation mode, deduplication.

Thread-safe (one lock around each call, which never blocks on I/O) and task-safe
(calls never await). Memory is bounded: counters whose window has passed are
swept, deduplication ids are kept in two generations swapped every
``min_dedup`` seconds (so an id is remembered at least that long and at most
twice that, as Mixer's memquota did), and at most ``max_counters`` counters
exist at once (a call that would create one more is refused as unavailable).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from adapters._quota.core import Allocation, Counter, LimiterUnavailable
from adapters._quota.params import Algorithm

_SWEEP_EVERY = 1.0  # seconds between sweeps of expired counters


class _Rolling:
    """A rolling window: (bucket index, amount) pairs, oldest first, and their total."""

    __slots__ = ("buckets", "total", "nb", "bucket")

    def __init__(self, nb: int, bucket: float) -> None:
        self.buckets: deque[list[int]] = deque()
        self.total = 0
        self.nb = nb
        self.bucket = bucket

    def expire(self, index: int) -> None:
        buckets = self.buckets
        oldest_valid = index - self.nb + 1
        while buckets and buckets[0][0] < oldest_valid:
            self.total -= buckets.popleft()[1]

    def add(self, index: int, amount: int) -> None:
        buckets = self.buckets
        if buckets and buckets[-1][0] == index:
            buckets[-1][1] += amount
        else:
            buckets.append([index, amount])
        self.total += amount

    def release(self, index: int, amount: int) -> int:
        """Free up to ``amount`` from the newest bucket backwards (Mixer's rollingWindow.release)."""
        buckets = self.buckets
        freed = 0
        while buckets and freed < amount:
            take = min(buckets[-1][1], amount - freed)
            buckets[-1][1] -= take
            freed += take
            if buckets[-1][1] == 0:
                buckets.pop()
        self.total -= freed
        return freed

    def reset(self, index: int, now: float) -> float:
        oldest = self.buckets[0][0] if self.buckets else index
        return max(0.0, (oldest + self.nb) * self.bucket - now)

    def end(self) -> float:
        return (self.buckets[-1][0] + self.nb) * self.bucket if self.buckets else 0.0


class MemoryLimiter:
    """Counters in memory; see :mod:`adapters._quota.core` for the semantics.

    :param now: wall-clock seconds (windows align to it).
    :param monotonic: monotonic seconds (deduplication and sweeping).
    :param min_dedup: seconds a deduplication id is remembered at least.
    :param max_counters: the most counters kept at once.
    """

    def __init__(self, now: Any, monotonic: Any, min_dedup: float = 1.0, max_counters: int = 100_000) -> None:
        self._now = now
        self._monotonic = monotonic
        self._min_dedup = min_dedup
        self._max_counters = max_counters
        self._lock = threading.Lock()
        self._fixed: dict[str, list[Any]] = {}      # id -> [window index, used, window end]
        self._rolling: dict[str, _Rolling] = {}
        self._cells: dict[str, int] = {}            # allocation mode: id -> in use
        self._recent: dict[tuple[str, str], tuple[int, bool, float]] = {}
        self._old: dict[tuple[str, str], tuple[int, bool, float]] = {}
        self._swapped = monotonic()
        self._swept = monotonic()

    # --- bookkeeping ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._fixed) + len(self._rolling) + len(self._cells)

    def _housekeeping(self, mono: float, now: float) -> None:
        if mono - self._swapped >= self._min_dedup:
            # Two generations: an id lives at least min_dedup, at most twice that.
            self._old = self._recent if mono - self._swapped < 2 * self._min_dedup else {}
            self._recent = {}
            self._swapped = mono
        if mono - self._swept >= _SWEEP_EVERY:
            self.sweep(now)
            self._swept = mono

    def sweep(self, now: float | None = None) -> int:
        """Drop counters whose window has passed; returns how many were dropped (call under the lock)."""
        now = self._now() if now is None else now
        dead = [k for k, v in self._fixed.items() if v[2] <= now]
        for key in dead:
            del self._fixed[key]
        dead_rolling = [k for k, v in self._rolling.items() if v.end() <= now]
        for key in dead_rolling:
            del self._rolling[key]
        return len(dead) + len(dead_rolling)

    def _room(self, now: float) -> None:
        if len(self) >= self._max_counters:
            self.sweep(now)
            if len(self) >= self._max_counters:
                raise LimiterUnavailable(f"too many counters (maxCounters {self._max_counters})")

    # --- the calls ----------------------------------------------------------

    def allocate_one(self, counter: Counter, best_effort: bool = False, dedup_id: str = "") -> Allocation:
        """Charge one counter: the common case, kept short (fixed windows inline)."""
        if dedup_id or counter.amount <= 0 or counter.window == 0 \
                or counter.algorithm is not Algorithm.ALIGNED_FIXED_WINDOW:
            return self.allocate((counter,), best_effort=best_effort, dedup_id=dedup_id)[0]
        granted, remaining, reset = self.fixed(counter.id, counter.amount, counter.max_amount, counter.window,
                                               best_effort)
        return Allocation(granted, remaining, reset, granted == counter.amount)

    def fixed(self, cid: str, amount: int, max_amount: int, window: float,
              best_effort: bool = False) -> tuple[int, int, float]:
        """Charge a fixed-window counter ``amount`` (> 0): (granted, remaining, seconds to the window's end)."""
        with self._lock:
            now = self._now()
            mono = self._monotonic()
            if mono - self._swapped >= self._min_dedup or mono - self._swept >= _SWEEP_EVERY:
                self._housekeeping(mono, now)
            index = math.floor(now / window)
            end = (index + 1) * window
            entry = self._fixed.get(cid)
            used = entry[1] if entry is not None and entry[0] == index else 0
            left = max_amount - used
            if amount > left:
                if not best_effort or left <= 0:
                    return 0, max(0, left), end - now
                amount = left
            if entry is None:
                self._room(now)
                self._fixed[cid] = [index, used + amount, end]
            elif entry[0] != index:
                entry[0], entry[1], entry[2] = index, amount, end
            else:
                entry[1] = used + amount
            return amount, left - amount, end - now

    def allocate(self, counters: Sequence[Counter], *, best_effort: bool = False, dedup_id: str = "",
                 independent: bool = False) -> list[Allocation]:
        """Charge ``counters`` (all or nothing unless ``independent``); one Allocation per counter."""
        with self._lock:
            now = self._now()
            mono = self._monotonic()
            self._housekeeping(mono, now)
            if dedup_id and len(counters) == 1:
                key = (counters[0].id, dedup_id)
                previous = self._recent.get(key, self._old.get(key))
                if previous is not None:
                    state = self._state(counters[0], now, 0)
                    # A replay's reset is what is left of the first answer's validity (Mixer's dedupState.exp).
                    return [Allocation(previous[0], state[1], max(0.0, previous[2] - now), previous[1],
                                       deduplicated=True)]
            if any(c.amount < 0 for c in counters):
                independent = True  # releases free what is in use, each on its own
            single = independent or len(counters) == 1
            plans = [self._state(c, now, c.amount, best_effort and single) for c in counters]
            if not single and not all(p[0] == c.amount for p, c in zip(plans, counters)):
                # One does not fit: charge none.
                out = []
                for p, c in zip(plans, counters):
                    fits = p[0] == c.amount
                    out.append(Allocation(0, p[1] + (p[0] if c.amount > 0 else 0), p[2], fits))
                return out
            out = []
            for plan, counter in zip(plans, counters):
                granted = plan[0]
                if granted != 0:
                    remaining, reset = self._charge(counter, now, granted)
                else:
                    remaining, reset = plan[1], plan[2]
                fits = granted == counter.amount or counter.amount < 0
                out.append(Allocation(abs(granted), remaining, reset, fits))
            if dedup_id and len(counters) == 1:
                # Every answer is remembered, releases and denials too, as Mixer's memquota did:
                # a retried release must not free capacity twice.
                counter = counters[0]
                if counter.amount <= 0 or out[0].granted == 0 or counter.window == 0:
                    valid_until = now  # nothing granted to keep valid (Mixer: no expiration)
                elif counter.algorithm is Algorithm.ROLLING_WINDOW:
                    valid_until = now + (counter.valid if counter.valid >= 0 else counter.window)
                else:
                    valid_until = now + out[0].reset
                self._recent[(counter.id, dedup_id)] = (out[0].granted, out[0].fits, valid_until)
            return out

    def count(self, counters: Sequence[Counter], stop_when_over: bool = False) -> list[tuple[int, float]]:
        """Count as envoyproxy/ratelimit does (fixed windows, charged past the limit): (count after, reset) each.

        ``stop_when_over``: charge only when no counter would go over its limit, or the
        counters that would (the reference's ``STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT``).
        """
        with self._lock:
            now = self._now()
            mono = self._monotonic()
            if mono - self._swapped >= self._min_dedup or mono - self._swept >= _SWEEP_EVERY:
                self._housekeeping(mono, now)
            used = [self._used(c, now) for c in counters]
            over = [u + c.amount > c.max_amount for (u, _), c in zip(used, counters)]
            stop = stop_when_over and any(over)
            out = []
            for counter, is_over in zip(counters, over):
                amount = counter.amount if not stop or is_over else 0
                if amount > 0:
                    self._charge(counter, now, amount)
                count, reset = self._used(counter, now)  # a counter given twice counts both times, in turn
                out.append((count, reset))
            return out

    def _state(self, counter: Counter, now: float, amount: int, best_effort: bool = False) -> tuple[int, int, float]:
        """(what would be granted, remaining after it, reset) without changing anything."""
        used, reset = self._used(counter, now)
        limit = counter.max_amount
        if amount <= 0:
            if amount < 0:  # release: frees what is in use (in a window: the newest grants first)
                return (-min(-amount, used), limit - used + min(-amount, used), reset)
            return (0, max(0, limit - used), reset)
        left = max(0, limit - used)
        if amount <= left:
            return (amount, left - amount, reset)
        if best_effort:
            return (left, 0, reset)
        return (0, left, reset)

    def _used(self, counter: Counter, now: float) -> tuple[int, float]:
        if counter.window == 0:
            return self._cells.get(counter.id, 0), 0.0
        if counter.algorithm is Algorithm.ROLLING_WINDOW:
            index = math.floor(now / counter.bucket)
            rolling = self._rolling.get(counter.id)
            if rolling is None:
                return 0, round(counter.window, 9)
            rolling.expire(index)
            return rolling.total, rolling.reset(index, now)
        index = math.floor(now / counter.window)
        end = (index + 1) * counter.window
        entry = self._fixed.get(counter.id)
        if entry is None or entry[0] != index:
            return 0, end - now
        return entry[1], end - now

    def _charge(self, counter: Counter, now: float, amount: int) -> tuple[int, float]:
        """Add ``amount`` (negative releases) to a counter; returns (remaining, reset)."""
        limit = counter.max_amount
        if counter.window == 0:
            used = self._cells.get(counter.id)
            if used is None:
                self._room(now)
                used = 0
            used += amount
            if used <= 0:
                self._cells.pop(counter.id, None)
                used = 0
            else:
                self._cells[counter.id] = used
            return limit - used, 0.0
        if counter.algorithm is Algorithm.ROLLING_WINDOW:
            index = math.floor(now / counter.bucket)
            rolling = self._rolling.get(counter.id)
            if rolling is None:
                self._room(now)
                rolling = self._rolling[counter.id] = _Rolling(round(counter.window / counter.bucket),
                                                               counter.bucket)
            if amount < 0:
                rolling.release(index, -amount)
            else:
                rolling.add(index, amount)
            return limit - rolling.total, rolling.reset(index, now)
        index = math.floor(now / counter.window)
        end = (index + 1) * counter.window
        entry = self._fixed.get(counter.id)
        if entry is None:
            self._room(now)
            entry = self._fixed[counter.id] = [index, 0, end]
        elif entry[0] != index:
            entry[0], entry[1], entry[2] = index, 0, end
        entry[1] = max(0, entry[1] + amount)
        return limit - entry[1], end - now
