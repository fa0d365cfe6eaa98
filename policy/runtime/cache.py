"""The decision cache: keyed by the values of the attributes a decision actually read.

Each decision records its reads (a *shape*: attribute names and map keys). The
cache keeps the distinct shapes seen; a lookup builds, for each shape, the tuple of
the request's values for exactly those reads (absent → None) and looks that up.
Evaluation is deterministic in what it reads, so a request agreeing with a cached
request on every read attribute would take the same path to the same decision:
requests differing only in unread attributes (a request id) share one entry.

Entries expire by their decision's valid duration and use count, and the cache is
bounded twice (cachetools' TLRU: least recently used goes first when full): by
entry count and by bytes. A key holds the request's own values, which a client
chooses (3,000 distinct 64 KiB headers are 191 MiB), so each entry is charged the
approximate size of its key values and of its decision (see :func:`entry_size`)
and the sum never exceeds ``max_bytes``; an entry larger than the whole budget is
not cached. Keys are the values themselves, never a digest of them, so two
different requests can never share a decision. One cache belongs to one config
snapshot; a reload starts empty.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import Cache, TLRUCache

import ipaddress

from policy.attributes import Read, ValueType


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted(value.items()))
    if isinstance(value, _IP_TYPES):
        return _ip_key(value)
    return value


def _ip_key(value: Any) -> Any:
    # ipaddress objects hash in Python code (hex of the integer), several times per
    # lookup; their integer and width hash in C. The width keeps IPv4 and IPv6 apart.
    return None if value is None else (value._ip, value._max_prefixlen)


_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_PLAIN_TYPES = frozenset({ValueType.STRING, ValueType.INT64, ValueType.DOUBLE, ValueType.BOOL,
                          ValueType.TIMESTAMP, ValueType.DURATION, ValueType.BYTES})


class _AbsentMap:
    """Stands in for an absent map in a cache key: every key reads as None."""

    __slots__ = ()

    def get(self, key: Any, default: Any = None) -> None:
        """None, whatever the key."""
        return None


_ABSENT_MAP = _AbsentMap()
_ABSENT_KEY = ("<absent map key>",)


def _key_function(shape: tuple[Read, ...], types: Mapping[str, ValueType],
                  index: int) -> Callable[[dict[str, Any]], tuple]:
    """Compile a function that extracts the key for ``shape`` from a raw attribute dict.

    The key is one flat tuple, ``(index, value, ...)``: the shape's number first, so keys of
    different shapes never meet. ``types`` (the vocabulary) lets values of plain types go
    into the key as they are and IP addresses by their integer; attributes of unknown type
    take the generic path.
    """
    parts = [str(index)]
    namespace: dict[str, Any] = {"_freeze": _freeze, "_ip_key": _ip_key}
    for index, (name, key) in enumerate(shape):
        namespace[f"n{index}"] = name
        if key is None:
            value_type = types.get(name)
            if value_type in _PLAIN_TYPES:
                parts.append(f"v.get(n{index})")
            elif value_type is ValueType.IP_ADDRESS:
                parts.append(f"_ip_key(v.get(n{index}))")
            else:
                parts.append(f"_freeze(v.get(n{index}))")
        else:
            namespace[f"k{index}"] = key
            # Three values: map absent (None), key absent from a present map (_K), or the value.
            # Mixer reads the first as an error and the second as "", so they key apart.
            parts.append(f"v.get(n{index}, _E).get(k{index}, _K)")
    namespace["_E"] = _ABSENT_MAP
    namespace["_K"] = _ABSENT_KEY
    source = f"def key(v):\n    return ({', '.join(parts)},)\n"
    exec(compile(source, f"<cache key {len(shape)} reads>", "exec"), namespace)
    return namespace["key"]


#: Bytes charged per entry besides its key values and decision: the key tuple, the entry
#: record and the cache's own bookkeeping (a link and a timer node per entry).
ENTRY_OVERHEAD = 512
#: Bytes charged for a decision besides its strings (the dataclass, its status, tuples).
DECISION_OVERHEAD = 1024

_getsizeof = sys.getsizeof
_SMALL = (type(None), bool, int, float)
#: CPython's fixed cost of a compact str, a bytes and a tuple (plus one pointer per item).
_STR_BASE, _BYTES_BASE, _TUPLE_BASE, _POINTER = 49, 33, 40, 8


def value_size(value: Any) -> int:
    """Approximate bytes a key value holds: an upper bound from lengths, without sys.getsizeof.

    This runs for every stored decision. A string counts one byte a character when ASCII
    (an O(1) flag in CPython), else four; tuples and maps are summed.
    """
    if isinstance(value, str):
        return _STR_BASE + (len(value) if value.isascii() else 4 * len(value))
    if isinstance(value, _SMALL):
        return 32
    if isinstance(value, tuple):
        size = _TUPLE_BASE + _POINTER * len(value)
        for item in value:
            size += value_size(item)
        return size
    if isinstance(value, bytes):
        return _BYTES_BASE + len(value)
    if isinstance(value, Mapping):
        return _getsizeof(value) + sum(value_size(k) + value_size(v) for k, v in value.items())
    return _getsizeof(value)


def decision_size(value: Any) -> int:
    """Approximate bytes a cached decision holds, counting the transports' encodings of it.

    The request-dependent strings (status message, body, header operations) are counted
    three times: once in the decision and once per transport encoding kept in its memo.
    """
    strings = 0
    status = getattr(value, "status", None)
    if status is not None:
        strings += len(getattr(status, "message", "") or "")
    strings += len(getattr(value, "body", None) or "")
    for ops in (getattr(value, "request_headers", ()), getattr(value, "response_headers", ())):
        for op in ops:
            strings += len(op.name) + len(op.value)
    return DECISION_OVERHEAD + 3 * strings


def entry_size(key_values: tuple, value: Any) -> int:
    """The bytes one cache entry is charged: its key values, its decision and a fixed overhead."""
    return ENTRY_OVERHEAD + value_size(key_values) + decision_size(value)


@dataclass
class _Entry:
    value: Any
    expires_at: float
    uses_left: float
    size: int = 0


@dataclass
class CacheStats:
    """Counters of one cache."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    uncacheable: int = 0
    shapes: int = 0
    size: int = 0
    bytes: int = 0  # approximate bytes the entries hold (see entry_size)
    too_large: int = 0  # decisions not cached because one entry would exceed max_bytes


class _CountingTLRU(TLRUCache):
    """A TLRU whose size is in bytes (each entry's ``size``), counting evictions."""

    def __init__(self, max_bytes: int, timer: Callable[[], float], stats: CacheStats) -> None:
        super().__init__(max_bytes, ttu=lambda _k, entry, _now: entry.expires_at, timer=timer,
                         getsizeof=lambda entry: entry.size)
        self._stats = stats

    def get(self, key: Any, default: Any = None) -> Any:
        """The live entry under ``key`` (touched as most recently used), else ``default``.

        One ``__getitem__`` (which checks the entry's expiry itself): cachetools' ``get``
        looks the key up twice and enters its timer context, twice the cost of a cached check's lookup.
        """
        try:
            return self[key]
        except KeyError:
            return default

    def popitem(self) -> Any:
        item = super().popitem()
        self._stats.evictions += 1
        return item


class DecisionCache:
    """A bounded cache of decisions keyed by read attribute values."""

    def __init__(
        self,
        max_entries: int = 10_000,
        max_shapes: int = 64,
        timer: Callable[[], float] = time.monotonic,
        types: Mapping[str, ValueType] | None = None,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.stats = CacheStats()
        self._types = types or {}
        self._timer = timer
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries = _CountingTLRU(max_bytes, timer, self.stats)
        self._max_shapes = max_shapes
        self._shapes: dict[frozenset[Read], int] = {}
        self._keyers: list[Callable[[dict[str, Any]], tuple]] = []

    def lookup(self, values: dict[str, Any]) -> Any | None:
        """Return the cached value for a request's raw attributes, or None (counted as a miss)."""
        entries = self._entries
        for keyer in self._keyers:
            key = keyer(values)
            try:  # one __getitem__, which checks the entry's expiry (see _CountingTLRU.get)
                entry = entries[key]
            except KeyError:
                continue
            if entry.uses_left <= 1:
                # This use is the last one the decision allowed.
                entries.pop(key, None)
                self.stats.expirations += 1
            else:
                entry.uses_left -= 1
            self.stats.hits += 1
            return entry.value
        self.stats.misses += 1
        return None

    def store(
        self,
        reads: Iterable[Read],
        values: dict[str, Any],
        value: Any,
        valid_duration: float | None,
        valid_use_count: int | None,
    ) -> bool:
        """Cache ``value`` under the values of ``reads``; False when it may not be cached."""
        if not valid_duration or valid_duration <= 0 or valid_use_count == 0:
            self.stats.uncacheable += 1
            return False
        shape = frozenset(reads)
        index = self._shapes.get(shape)
        if index is None:
            if len(self._keyers) >= self._max_shapes:
                self.stats.uncacheable += 1
                return False
            index = len(self._keyers)
            self._shapes[shape] = index
            self._keyers.append(_key_function(tuple(sorted(shape, key=lambda r: (r[0], r[1] or ""))), self._types,
                                              index))
            self.stats.shapes = len(self._keyers)
        key = self._keyers[index](values)
        size = entry_size(key, value)
        if size > self.max_bytes:
            self.stats.too_large += 1
            self.stats.uncacheable += 1
            return False
        uses = float("inf") if valid_use_count is None else valid_use_count
        entries = self._entries
        # Cache.__len__ counts without TLRUCache's expiry sweep (len() runs one each time);
        # popitem sweeps what has expired, then drops the least recently used entry.
        if Cache.__len__(entries) >= self.max_entries and key not in entries:
            while Cache.__len__(entries) >= self.max_entries:
                entries.popitem()  # counted as evictions
        entries[key] = _Entry(value, self._timer() + valid_duration, uses, size)
        return True

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Approximate bytes the entries hold now (at most ``max_bytes``)."""
        return self._entries.currsize

    def snapshot_stats(self) -> CacheStats:
        """A copy of the counters, with the current size."""
        stats = CacheStats(**{k: getattr(self.stats, k) for k in self.stats.__dataclass_fields__})
        stats.size = len(self._entries)
        stats.bytes = self._entries.currsize
        return stats

    def clear(self) -> None:
        """Drop every entry (the shapes seen are kept: they depend only on the config)."""
        self._entries.clear()
