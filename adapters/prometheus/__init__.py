"""The ``prometheus`` adapter: metric instances become Prometheus counters, gauges and histograms.

What it does
    Each ``metric`` instance named in ``metrics[].instanceName`` updates one series of
    its Prometheus metric: a GAUGE is set to the value, a COUNTER grows by it, a
    DISTRIBUTION observes it into histogram buckets. The series' labels are
    ``labelNames``, each filled from the instance's dimension of that name (a missing
    dimension gives an empty label value; dimensions without a label are ignored),
    stringified as Mixer did (``true``, ``1.5``, ``1m30s``, RFC 3339 times).
    Values may be numbers, durations (seconds) or numeric strings.

Where the metrics appear
    On the serving service's metrics endpoint (``policy serve --metrics-listen``),
    beside the service's own ``policy_*`` metrics: the handler registers its families
    in the registry the host passes as ``BuildContext.metrics_registry``
    (a handler built without one, as by ``policy validate --build``, keeps a private
    registry nothing serves). Mixer instead ran its own HTTP server on :42422.

Params (Mixer's ``adapter.prometheus.config.Params``)
    ``metrics[]``: ``instanceName`` (required: the instance's full name, or its
    first dotted part), ``kind`` (required: GAUGE, COUNTER or DISTRIBUTION), ``name``
    (default: the instance name), ``namespace`` (name prefix, default ``istio``),
    ``description``, ``labelNames``, and for distributions ``buckets`` with exactly
    one of ``linearBuckets {numFiniteBuckets, width, offset}``,
    ``exponentialBuckets {numFiniteBuckets, growthFactor, scale}`` or
    ``explicitBuckets {bounds}`` (default: Prometheus' default buckets). As in Mixer,
    linear and exponential definitions give ``numFiniteBuckets + 1`` upper bounds,
    and names are made safe by dropping a leading ``/``, turning ``/ . space`` into
    ``_`` and removing ``-``.
    ``metricsExpirationPolicy``: ``metricsExpiryDuration`` (series not updated for
    this long are dropped) and ``expiryCheckIntervalDuration`` (how often to look;
    default half the expiry).

Fail mode
    Reports never affect checks. An instance no entry takes, or a value that is not
    a number (or a negative counter increment), is skipped and logged once per
    instance and reason; the rest of the batch is recorded.

Limits
    Counters are exported with a ``_total`` suffix when their name lacks one
    (prometheus-client's text format requires it; Mixer's Go client did not add it).
    Reloading a config whose metric definitions are unchanged keeps their values; a
    changed definition (kind, labels, buckets, help) starts the metric over. Two
    handlers defining the same metric name differently: the later one wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from adapters._reportvalues import stringify, to_number
from adapters.prometheus._params import (
    Kind,
    MetricInfo,
    PrometheusParams,
    definition_of,
    validate_params,
)
from policy import Adapter, BuildContext, FieldError, Handler, Metric, hookimpl


class PrometheusHandler(Handler):
    """Records metric instances into the families it holds in a :class:`MetricStore`."""

    def __init__(self, params: PrometheusParams, store: Any, logger: logging.Logger) -> None:
        policy = params.metrics_expiration_policy
        expiry = policy.metrics_expiry_duration.total_seconds() if policy else None
        interval = 0.0
        if policy is not None:
            given = policy.expiry_check_interval_duration
            interval = given.total_seconds() if given is not None else expiry / 2  # type: ignore[operator]
        self._store = store
        self._log = logger
        self._warned: set[tuple[str, str]] = set()
        definitions = [definition_of(info) for info in params.metrics]
        families, replaced = store.acquire(id(self), definitions, expiry, interval)
        for name in replaced:
            logger.warning("metric %s redefined: it starts over", name)
        self._by_instance: dict[str, tuple[Any, tuple[str, ...]]] = {}
        for info, definition in zip(params.metrics, definitions):
            self._by_instance[info.instance_name] = (families[definition.name], definition.dimensions)
        self._families = tuple({id(f): f for f, _ in self._by_instance.values()}.values())

    def _target(self, name: str) -> tuple[Any, tuple[str, ...]] | None:
        found = self._by_instance.get(name)
        if found is None and "." in name:
            found = self._by_instance.get(name.split(".", 1)[0])
        return found

    async def report(self, instances: Sequence[Any]) -> None:
        """Record a batch (on the event loop: in-memory work under the store's lock)."""
        store = self._store
        record = self._record
        with store.lock:
            now = store.clock()
            for family in self._families:
                if family.due(now):  # expired series are swept once per batch at most
                    family.sweep(now)
            for instance in instances:
                problem = record(instance, now)
                if problem is not None:
                    self._warn_once(getattr(instance, "name", "?"), problem)

    def _record(self, instance: Any, now: float) -> str | None:
        if instance.__class__ is not Metric and not isinstance(instance, Metric):
            return f"not a metric instance ({type(instance).__name__})"
        target = self._by_instance.get(instance.name) or self._target(instance.name)
        if target is None:
            return "no metrics[] entry takes this instance"
        family, dimensions = target
        value = instance.value
        if value.__class__ is int or value.__class__ is float:
            value = float(value)
        else:
            try:
                value = to_number(value)
            except ValueError as exc:
                return str(exc)
        if value != value:  # NaN
            return "the value is NaN"
        if value < 0 and family.definition.kind is Kind.COUNTER:
            return f"a counter cannot decrease (value {value!r})"
        labels = tuple(map(stringify, map(instance.dimensions.get, dimensions)))
        family.update(labels, value, now)
        return None

    def _warn_once(self, name: str, problem: str) -> None:
        key = (name, problem.split(" (", 1)[0])
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning("instance %s skipped: %s (logged once)", name, problem)

    async def close(self) -> None:
        """Stop exporting the metrics only this handler held."""
        self._store.release(id(self))


class Prometheus(Adapter[PrometheusParams]):
    """Exports metric instances as Prometheus metrics on the service's metrics endpoint."""

    name = "prometheus"
    description = "Publishes metric instances as Prometheus counters, gauges and histograms"
    templates = ("metric",)
    Params = PrometheusParams

    @classmethod
    def validate(cls, params: PrometheusParams) -> Iterator[FieldError]:
        """Kinds given, names valid and unique, buckets well formed, expiry positive."""
        return validate_params(params)

    @classmethod
    def build(cls, params: PrometheusParams, context: BuildContext) -> PrometheusHandler:
        """Hold the params' metrics in the store of the service's registry (or a private one)."""
        try:
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            raise RuntimeError("the prometheus adapter needs prometheus-client:"
                               " pip install 'sidecar-policy[prometheus]'") from exc
        from adapters.prometheus._store import store_for

        registry = context.metrics_registry
        if registry is None:
            registry = CollectorRegistry(auto_describe=False)
        return PrometheusHandler(params, store_for(registry, context.clock.monotonic), context.logger)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``prometheus`` adapter."""
    registry.add(Prometheus)


__all__ = ["Kind", "MetricInfo", "Prometheus", "PrometheusHandler", "PrometheusParams", "policy_register_adapters"]
