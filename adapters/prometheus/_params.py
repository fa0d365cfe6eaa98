"""Params of the ``prometheus`` adapter (Mixer's ``adapter.prometheus.config.Params``), their checks,
and the metric definitions they resolve to."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from policy import FieldError, param

#: Prometheus' default histogram buckets (client_golang's DefBuckets), used when none are given.
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

DEFAULT_NAMESPACE = "istio"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Kind(enum.Enum):
    """What kind of Prometheus metric a metric instance feeds."""

    UNSPECIFIED = "UNSPECIFIED"
    GAUGE = "GAUGE"
    COUNTER = "COUNTER"
    DISTRIBUTION = "DISTRIBUTION"


@dataclass(frozen=True)
class LinearBuckets:
    """``numFiniteBuckets`` buckets of equal ``width`` whose first upper bound is ``offset``."""

    num_finite_buckets: int = param(0, doc="How many finite buckets (> 0).")
    width: float = param(0.0, doc="Width of each bucket (> 0).")
    offset: float = param(0.0, doc="Lower bound of the first bucket.")


@dataclass(frozen=True)
class ExponentialBuckets:
    """Buckets whose upper bounds are ``scale * growthFactor^i``."""

    num_finite_buckets: int = param(0, doc="How many finite buckets (> 0).")
    growth_factor: float = param(0.0, doc="Ratio between successive bounds (> 1).")
    scale: float = param(0.0, doc="The first upper bound (> 0).")


@dataclass(frozen=True)
class ExplicitBuckets:
    """Buckets with the given upper bounds."""

    bounds: list[float] = param(default_factory=list, doc="Upper bounds, strictly increasing.")


@dataclass(frozen=True)
class BucketsDefinition:
    """Exactly one of linear, exponential or explicit buckets."""

    linear_buckets: LinearBuckets | None = param(None, doc="Buckets of equal width.")
    exponential_buckets: ExponentialBuckets | None = param(None, doc="Buckets growing geometrically.")
    explicit_buckets: ExplicitBuckets | None = param(None, doc="Buckets with given bounds.")


@dataclass(frozen=True)
class MetricInfo:
    """How one metric instance is represented in Prometheus."""

    instance_name: str = param(doc="The metric instance this entry takes (its full name, or its first part).")
    name: str = param("", doc="The metric name (default: the instance name, made Prometheus-safe).")
    namespace: str = param("", doc="Prefix of the metric name (default: istio).")
    description: str = param("", doc="Help text (default: the name).")
    kind: Kind = param(Kind.UNSPECIFIED, doc="GAUGE (set), COUNTER (add) or DISTRIBUTION (observe).")
    label_names: list[str] = param(default_factory=list, doc="Labels, each filled from the dimension of that name.")
    buckets: BucketsDefinition | None = param(None, doc="DISTRIBUTION buckets (default: Prometheus' defaults).")


@dataclass(frozen=True)
class MetricsExpirationPolicy:
    """Series not updated for ``metricsExpiryDuration`` are no longer exported."""

    metrics_expiry_duration: dt.timedelta = param(doc="How long a series lives without updates.")
    expiry_check_interval_duration: dt.timedelta | None = param(
        None, doc="How often to look for expired series (default: half the expiry duration).")


@dataclass(frozen=True)
class PrometheusParams:
    """Params of the ``prometheus`` adapter."""

    metrics: list[MetricInfo] = param(default_factory=list, doc="The metrics to export.")
    metrics_expiration_policy: MetricsExpirationPolicy | None = param(
        None, doc="Expire series that stop being updated (default: never).")


@dataclass(frozen=True)
class Definition:
    """A resolved metric: Prometheus name, kind, help, labels (with the dimension each reads), buckets."""

    name: str
    kind: Kind
    documentation: str
    label_names: tuple[str, ...]
    dimensions: tuple[str, ...] = field(compare=False)
    buckets: tuple[float, ...] = ()


def safe_name(text: str) -> str:
    """A Prometheus-safe name as Mixer made it: leading ``/`` dropped, ``/ . space`` → ``_``, ``-`` removed."""
    return text.removeprefix("/").replace("/", "_").replace(".", "_").replace(" ", "_").replace("-", "")


def buckets_of(definition: BucketsDefinition | None) -> tuple[float, ...]:
    """The upper bounds a buckets definition gives (Mixer: ``numFiniteBuckets + 1`` bounds)."""
    if definition is None:
        return DEFAULT_BUCKETS
    if definition.linear_buckets is not None:
        lin = definition.linear_buckets
        return tuple(lin.offset + lin.width * i for i in range(lin.num_finite_buckets + 1))
    if definition.exponential_buckets is not None:
        exp = definition.exponential_buckets
        return tuple(exp.scale * exp.growth_factor ** i for i in range(exp.num_finite_buckets + 1))
    if definition.explicit_buckets is not None:
        return tuple(float(b) for b in definition.explicit_buckets.bounds)
    return DEFAULT_BUCKETS


def definition_of(info: MetricInfo) -> Definition:
    """Resolve one ``MetricInfo`` into the metric it defines."""
    namespace = safe_name(info.namespace) if info.namespace else DEFAULT_NAMESPACE
    name = f"{namespace}_{safe_name(info.name or info.instance_name)}"
    labels = tuple(safe_name(label) for label in info.label_names)
    return Definition(
        name=name, kind=info.kind, documentation=info.description or name, label_names=labels,
        dimensions=tuple(info.label_names),
        buckets=buckets_of(info.buckets) if info.kind is Kind.DISTRIBUTION else (),
    )


def _bucket_errors(at: str, definition: BucketsDefinition) -> Iterator[FieldError]:
    given = [d for d in (definition.linear_buckets, definition.exponential_buckets, definition.explicit_buckets)
             if d is not None]
    if len(given) != 1:
        yield FieldError(at, "give exactly one of linearBuckets, exponentialBuckets or explicitBuckets")
        return
    if definition.linear_buckets is not None:
        lin = definition.linear_buckets
        if lin.num_finite_buckets <= 0:
            yield FieldError(f"{at}.linearBuckets.numFiniteBuckets", f"must be > 0, got {lin.num_finite_buckets}")
        if lin.width <= 0:
            yield FieldError(f"{at}.linearBuckets.width", f"must be > 0, got {lin.width}")
    elif definition.exponential_buckets is not None:
        exp = definition.exponential_buckets
        if exp.num_finite_buckets <= 0:
            yield FieldError(f"{at}.exponentialBuckets.numFiniteBuckets",
                             f"must be > 0, got {exp.num_finite_buckets}")
        if exp.growth_factor <= 1:
            yield FieldError(f"{at}.exponentialBuckets.growthFactor", f"must be > 1, got {exp.growth_factor}")
        if exp.scale <= 0:
            yield FieldError(f"{at}.exponentialBuckets.scale", f"must be > 0, got {exp.scale}")
    else:
        bounds = definition.explicit_buckets.bounds  # type: ignore[union-attr]
        if not bounds:
            yield FieldError(f"{at}.explicitBuckets.bounds", "needs at least one bound")
        elif any(b >= c for b, c in zip(bounds, bounds[1:])):
            yield FieldError(f"{at}.explicitBuckets.bounds", f"must be strictly increasing, got {list(bounds)}")


def validate_params(params: PrometheusParams) -> Iterator[FieldError]:
    """Every problem with the params, each naming its field."""
    names: dict[str, int] = {}
    instances: dict[str, int] = {}
    for i, info in enumerate(params.metrics):
        at = f"metrics[{i}]"
        if not info.instance_name.strip():
            yield FieldError(f"{at}.instanceName", "must name the metric instance this entry takes")
        elif info.instance_name in instances:
            yield FieldError(f"{at}.instanceName",
                             f"{info.instance_name!r} is already taken by metrics[{instances[info.instance_name]}]")
        instances.setdefault(info.instance_name, i)
        if info.kind is Kind.UNSPECIFIED:
            yield FieldError(f"{at}.kind", "is required: GAUGE, COUNTER or DISTRIBUTION")
        definition = definition_of(info)
        if not _METRIC_NAME.match(definition.name):
            yield FieldError(f"{at}.name", f"{definition.name!r} is not a valid Prometheus metric name")
        elif definition.name in names:
            yield FieldError(f"{at}.name", f"{definition.name!r} is already defined by metrics[{names[definition.name]}]")
        names.setdefault(definition.name, i)
        seen: set[str] = set()
        for j, label in enumerate(definition.label_names):
            where = f"{at}.labelNames[{j}]"
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                yield FieldError(where, f"{label!r} is not a valid Prometheus label name")
            elif label in seen:
                yield FieldError(where, f"{label!r} is given twice")
            elif label == "le" and info.kind is Kind.DISTRIBUTION:
                yield FieldError(where, "'le' is reserved for histogram buckets")
            seen.add(label)
        if info.kind is Kind.DISTRIBUTION and info.buckets is not None:
            yield from _bucket_errors(f"{at}.buckets", info.buckets)
    policy = params.metrics_expiration_policy
    if policy is not None:
        if policy.metrics_expiry_duration.total_seconds() <= 0:
            yield FieldError("metricsExpirationPolicy.metricsExpiryDuration", "must be longer than 0s")
        interval = policy.expiry_check_interval_duration
        if interval is not None and interval.total_seconds() <= 0:
            yield FieldError("metricsExpirationPolicy.expiryCheckIntervalDuration", "must be longer than 0s")
