"""The metric families of every prometheus handler exporting to one ``CollectorRegistry``.

One :class:`MetricStore` is registered as a collector in a registry (the service's,
reached through ``BuildContext.metrics_registry``) and holds the families
its handlers define. A handler *acquires* its definitions when built and *releases*
them when closed: a family with the same definition is shared, so a config reload
keeps counting where the old handler left off (Mixer reused collectors whose
definition had not changed); a redefined family starts over; a family nobody holds
any more is no longer exported. Series carry the time they were last updated and
are dropped once older than their family's expiry, checked at most every expiry
check interval, when reporting and before each scrape.

Handlers update the store from the event loop, scrapes read it from the HTTP
server's thread: one lock guards both, and a scrape holds it only to copy values.
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from adapters.prometheus._params import Definition, Kind


@dataclass
class Series:
    """One label set's state: a value (gauge, counter) or bucket counts and a sum (histogram)."""

    value: float = 0.0
    counts: list[int] = field(default_factory=list)
    last_update: float = 0.0


@dataclass(eq=False)
class Family:
    """One exported metric: its definition, its series by label values, and who holds it."""

    definition: Definition
    series: dict[tuple[str, ...], Series] = field(default_factory=dict)
    owners: set[int] = field(default_factory=set)
    expiry: float | None = None
    check_interval: float = 0.0
    last_sweep: float = 0.0

    def update(self, labels: tuple[str, ...], value: float, now: float) -> None:
        """Apply one value: set a gauge, add to a counter, observe into a histogram."""
        series = self.series.get(labels)
        definition = self.definition
        kind = definition.kind
        if series is None:
            series = self.series[labels] = Series(
                counts=[0] * (len(definition.buckets) + 1) if kind is Kind.DISTRIBUTION else [])
        if kind is Kind.COUNTER:
            series.value += value
        elif kind is Kind.GAUGE:
            series.value = value
        else:
            series.counts[bisect.bisect_left(definition.buckets, value)] += 1
            series.value += value
        series.last_update = now

    def sweep(self, now: float) -> int:
        """Drop series not updated within the expiry; returns how many were dropped."""
        self.last_sweep = now
        if self.expiry is None:
            return 0
        stale = [labels for labels, s in self.series.items() if now - s.last_update > self.expiry]
        for labels in stale:
            del self.series[labels]
        return len(stale)

    def due(self, now: float) -> bool:
        """True when an expiry sweep is due."""
        return self.expiry is not None and now - self.last_sweep >= self.check_interval

    def rows(self) -> list[tuple[tuple[str, ...], float, list[int]]]:
        """A copy of every series (labels, value or sum, bucket counts), cheap enough to take under the lock."""
        return [(labels, s.value, s.counts[:]) for labels, s in self.series.items()]


def export(definition: Definition, rows: list[tuple[tuple[str, ...], float, list[int]]]) -> Any:
    """One family's copied series as a prometheus-client metric family (built outside the lock)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    d = definition
    labels = list(d.label_names)
    if d.kind is Kind.DISTRIBUTION:
        histogram = HistogramMetricFamily(d.name, d.documentation, labels=labels)
        bounds = [*(repr(float(b)) for b in d.buckets), "+Inf"]
        for values, total, counts in rows:
            running, buckets = 0, []
            for bound, count in zip(bounds, counts):
                running += count
                buckets.append((bound, running))
            histogram.add_metric(list(values), buckets, total)
        return histogram
    family_type = CounterMetricFamily if d.kind is Kind.COUNTER else GaugeMetricFamily
    family = family_type(d.name, d.documentation, labels=labels)
    for values, value, _ in rows:
        family.add_metric(list(values), value)
    return family


class MetricStore:
    """The families exported through one registry (a prometheus-client collector)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.families: dict[str, Family] = {}
        self.clock = clock

    def acquire(self, owner: int, definitions: Iterable[Definition], expiry: float | None,
                check_interval: float) -> tuple[dict[str, Family], list[str]]:
        """Hold a family for each definition (sharing an identical one); returns them by name and
        the names whose earlier, different definition was replaced."""
        held: dict[str, Family] = {}
        replaced: list[str] = []
        with self.lock:
            for definition in definitions:
                family = self.families.get(definition.name)
                if family is not None and family.definition != definition:
                    replaced.append(definition.name)
                    family = None
                if family is None:
                    family = self.families[definition.name] = Family(definition)
                family.owners.add(owner)
                family.expiry = expiry
                family.check_interval = check_interval
                held[definition.name] = family
        return held, replaced

    def release(self, owner: int) -> None:
        """Let go of ``owner``'s families; those nobody holds stop being exported."""
        with self.lock:
            for name, family in list(self.families.items()):
                family.owners.discard(owner)
                if not family.owners:
                    del self.families[name]

    def collect(self) -> Iterator[Any]:
        """Every family, after dropping expired series (prometheus-client calls this on scrape).

        Only the copying happens under the lock the event loop's handlers take; the
        metric families are built after it is released, so a scrape of many series
        holds a report (and so the loop) for as short a time as it can.
        """
        with self.lock:
            now = self.clock()
            copied = []
            for family in self.families.values():
                if family.expiry is not None:
                    family.sweep(now)
                copied.append((family.definition, family.rows()))
        for definition, rows in copied:
            yield export(definition, rows)


_stores: weakref.WeakKeyDictionary[Any, MetricStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def store_for(registry: Any, clock: Callable[[], float] = time.monotonic) -> MetricStore:
    """The store registered in ``registry``, registering a new one (reading ``clock``) on first use."""
    with _stores_lock:
        store = _stores.get(registry)
        if store is None:
            store = _stores[registry] = MetricStore(clock)
            registry.register(store)
        return store
