"""The service's own metrics: what it decided, how fast, and how its adapters and queues fare.

A :class:`Telemetry` belongs to one :class:`~policy.runtime.service.PolicyService`.
Hot-path events (a check answered, a handler failing, a quota charged) are counted
in plain dicts on the event loop: no locks, no prometheus-client objects on the
request path. Everything is turned into Prometheus metric families only when the
endpoint is scraped, by a collector registered in the service's *own*
``CollectorRegistry`` (never the global one, so several services in one process
and the tests do not collide). Counters that live in per-snapshot objects (the
decision cache) are carried over when a snapshot is retired, so they only grow.

Transports report each answered check with :meth:`Telemetry.observe_check`
(``PolicyService.check(..., api=...)`` does it for them; ``api`` is ``native``,
``ext_authz``, ``ratelimit`` or ``inprocess``) and other answers with
:meth:`Telemetry.observe` / :meth:`Telemetry.observe_rate_limit`. The metrics:

- ``policy_check_duration_seconds{api}``: histogram of check latency.
- ``policy_decisions_total{api,code}``: decisions by gRPC code name.
- ``policy_rule_decisions_total{rule,code}``: decisions each matched rule took part in.
- ``policy_decision_cache_{hits,misses,evictions}_total``, ``policy_decision_cache_entries``,
  ``policy_decision_cache_bytes`` (approximate, keys included) and ``policy_decision_cache_max_bytes``.
- ``policy_quota_grants_total{handler}``, ``policy_quota_granted_amount_total{handler}``,
  ``policy_quota_denials_total{handler,code}``: quota calls an adapter answered (and the
  rate-limit service's answers, by its backing handler).
- ``policy_adapter_errors_total{handler,call}`` and ``policy_adapter_timeouts_total{handler,call}``:
  a handler raised or exceeded its timeout (``call``: check, quota, report, ratelimit).
- ``policy_report_queue_depth{handler}``: report instances waiting.
- ``policy_report_{accepted,delivered,dropped,failed}_total{handler}``: the report pipeline.
- ``policy_config_generation``, ``policy_config_last_reload_success`` (1 or 0),
  ``policy_config_last_reload_timestamp_seconds``, ``policy_config_reloads_total``,
  ``policy_config_reload_failures_total``.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterator
from typing import Any

from policy.runtime.decision_log import log_decision
from policy.config.ratelimit.stats import STATS
from policy.sdk import Code

from policy.runtime.cache import DecisionCache
from policy.runtime.decision import Decision
from policy.sdk import QuotaResult

log = logging.getLogger("policy.telemetry")

#: Latency buckets (seconds): a cached in-process check takes microseconds, a remote adapter milliseconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)

#: The ``api`` label values the built-in transports use.
APIS = ("native", "ext_authz", "ratelimit", "inprocess")


class Histogram:
    """A lock-free histogram for one label set, updated on the event loop only."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value (``le`` semantics: a value equal to a bound falls in that bucket)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count), ..., ("+Inf", total count)]`` as Prometheus exports it."""
        out, running = [], 0
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), list(self.counts)):
            running += count
            out.append((bound, running))
        return out


#: Distinct (api, code, matched rules) counted before they are folded into the per-rule counters.
_MAX_RULE_SETS = 1024
_bisect_left = bisect.bisect_left

_CODE_NAMES: dict[int, str] = {code: code.name for code in Code}


def _le(bound: float) -> str:
    return repr(float(bound))


def _bump(counter: dict[Any, int], key: Any, amount: int = 1) -> None:
    counter[key] = counter.get(key, 0) + amount


class Telemetry:
    """Counts one service's events and exports them, with the service's state, as Prometheus metrics.

    :param service: the service whose state (cache, report queue, reloads) is read at scrape
        time; None for a standalone instance (tests, embedding).
    """

    def __init__(self, service: Any = None) -> None:
        self._service = service
        self._latency: dict[str, Histogram] = {}
        #: Checks by (api, code name, matched rules); other answers (rate limits) by (api, code) and (rule, code).
        self._checks: dict[tuple[str, str, tuple[str, ...]], int] = {}
        self._answers: dict[tuple[str, str], int] = {}
        self._rule_answers: dict[tuple[str, str], int] = {}
        self.rule_match_errors: dict[str, int] = {}
        self.adapter_errors: dict[tuple[str, str], int] = {}
        self.adapter_timeouts: dict[tuple[str, str], int] = {}
        self.quota_grants: dict[str, int] = {}
        self.quota_granted_amount: dict[str, int] = {}
        self.quota_denials: dict[tuple[str, str], int] = {}
        self._cache_carry = {"hits": 0, "misses": 0, "evictions": 0}
        self._registry: Any = None
        self._http: Any = None
        self._http_thread: threading.Thread | None = None
        self.metrics_address: str | None = None

    # --- events (event loop only) -----------------------------------------------

    def observe_check(self, api: str, seconds: float, decision: Decision) -> None:
        """Record one answered check: its latency under ``api``, its code, the rules it matched.

        One count per check, under ``(api, code, matched rules)``: the per-API and per-rule
        counters are summed from these when read (:attr:`decisions`, :attr:`rule_decisions`).
        """
        histogram = self._latency.get(api)
        if histogram is None:
            histogram = self._latency[api] = Histogram()
        histogram.counts[_bisect_left(histogram.bounds, seconds)] += 1
        histogram.total += seconds
        status_code = decision.status.code
        code = _CODE_NAMES[decision.code if status_code == 0 and decision.quotas else status_code]
        key = (api, code, decision.rules)
        checks = self._checks
        count = checks.get(key)
        if count is None and len(checks) >= _MAX_RULE_SETS:
            checks = self._fold()  # requests choose which rules match: keep the distinct sets bounded
        checks[key] = (count or 0) + 1
        log_decision(decision, api, seconds, code)

    def _fold(self) -> dict[tuple[str, str, tuple[str, ...]], int]:
        """Move the per-rule-set counts into the per-API and per-rule counters; returns the new, empty set."""
        checks, self._checks = self._checks, {}
        for (api, code, rules), count in checks.items():
            _bump(self._answers, (api, code), count)
            for rule in rules:
                _bump(self._rule_answers, (rule, code), count)
        return self._checks

    @property
    def decisions(self) -> dict[tuple[str, str], int]:
        """Answers by ``(api, code name)``."""
        out = dict(self._answers)
        for (api, code, _), count in list(self._checks.items()):
            out[(api, code)] = out.get((api, code), 0) + count
        return out

    @property
    def rule_decisions(self) -> dict[tuple[str, str], int]:
        """Answers each matched rule took part in, by ``(rule, code name)``."""
        out = dict(self._rule_answers)
        for (_, code, rules), count in list(self._checks.items()):
            for rule in rules:
                out[(rule, code)] = out.get((rule, code), 0) + count
        return out

    def observe(self, api: str, seconds: float, code: str, rules: tuple[str, ...] = ()) -> None:
        """Record one answer that is not a :class:`Decision` (a rate-limit response): latency and code name."""
        histogram = self._latency.get(api)
        if histogram is None:
            histogram = self._latency[api] = Histogram()
        histogram.observe(seconds)
        _bump(self._answers, (api, code))
        for rule in rules:
            _bump(self._rule_answers, (rule, code))

    def observe_rate_limit(self, handler: str, seconds: float, over_limit: bool) -> None:
        """Record one rate-limit service answer: latency and code under ``ratelimit``, grant or denial by handler."""
        code = "RESOURCE_EXHAUSTED" if over_limit else "OK"
        self.observe("ratelimit", seconds, code)
        if over_limit:
            _bump(self.quota_denials, (handler, code))
        else:
            _bump(self.quota_grants, handler)

    def rule_match_failed(self, rule: str) -> None:
        """Record that ``rule``'s match expression raised (it counted as no match, or denied)."""
        _bump(self.rule_match_errors, rule)

    def handler_failed(self, handler: str, call: str, timeout: bool) -> None:
        """Record that ``handler``'s ``call`` (check, quota, report) raised or timed out."""
        _bump(self.adapter_timeouts if timeout else self.adapter_errors, (handler, call))

    def quota_result(self, handler: str, result: QuotaResult) -> None:
        """Record one quota call's outcome for ``handler``."""
        if result.ok and result.granted_amount > 0:
            _bump(self.quota_grants, handler)
            _bump(self.quota_granted_amount, handler, result.granted_amount)
        else:
            _bump(self.quota_denials, (handler, result.status.code.name))

    def cache_retired(self, cache: DecisionCache | None) -> None:
        """Carry a retired snapshot's cache counters over, so the exported counters only grow."""
        if cache is None:
            return
        stats = cache.stats
        self._cache_carry["hits"] += stats.hits
        self._cache_carry["misses"] += stats.misses
        self._cache_carry["evictions"] += stats.evictions

    def latency(self, api: str) -> Histogram | None:
        """The latency histogram of ``api`` (None before its first check)."""
        return self._latency.get(api)

    # --- export -----------------------------------------------------------------

    @property
    def registry(self) -> Any:
        """This service's ``prometheus_client.CollectorRegistry`` (created on first use).

        Raises ImportError naming the extra to install when prometheus-client is missing.
        """
        if self._registry is None:
            try:
                from prometheus_client import CollectorRegistry
            except ImportError as exc:  # pragma: no cover - the test environment has it
                raise ImportError("metrics need prometheus-client: pip install 'sidecar-policy[prometheus]'") from exc
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_ServiceCollector(self, self._service))
            self._registry = registry
        return self._registry

    def render(self) -> str:
        """The Prometheus text exposition of every metric in :attr:`registry`."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode("utf-8")

    def serve_http(self, address: str) -> str:
        """Serve :attr:`registry` over HTTP (``/metrics``, any path) on ``HOST:PORT``; returns the bound address.

        Port 0 picks a free port. Raises ValueError for a malformed address and
        OSError when it cannot be bound.
        """
        from prometheus_client import start_http_server

        host, port = parse_listen_address(address)
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise OSError(f"--metrics-listen {address}: cannot listen: {exc.strerror or exc}") from None
        self._http, self._http_thread = server, thread
        bound_port = server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.metrics_address = f"{shown}:{bound_port}"
        log.info("metrics: serving Prometheus text on http://%s/metrics", self.metrics_address)
        return self.metrics_address

    def close(self) -> None:
        """Stop the HTTP endpoint, if serving."""
        server, self._http = self._http, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None


class _ServiceCollector:
    """Builds the metric families from a Telemetry's counters and its service's state, at scrape time.

    Runs on the HTTP server's thread: every dict is copied (one C-level call under
    the GIL) before it is iterated, so the event loop may keep counting meanwhile.
    """

    def __init__(self, telemetry: Telemetry, service: Any) -> None:
        self._telemetry = telemetry
        self._service = service

    def collect(self) -> Iterator[Any]:
        """Yield every metric family (called by prometheus-client on each scrape)."""
        from prometheus_client.core import HistogramMetricFamily

        t = self._telemetry
        latency = HistogramMetricFamily("policy_check_duration_seconds",
                                        "Seconds from receiving a check to its decision, by API.", labels=["api"])
        for api, histogram in list(t._latency.items()):
            latency.add_metric([api], histogram.cumulative(), histogram.total)
        yield latency
        yield _counter("policy_decisions", "Check decisions by API and gRPC code.", ["api", "code"], t.decisions)
        yield _counter("policy_rule_decisions", "Check decisions each matched rule took part in, by code.",
                       ["rule", "code"], t.rule_decisions)
        yield _counter("policy_rule_match_errors", "Requests whose rule match expression raised, by rule.",
                       ["rule"], t.rule_match_errors)
        yield _counter("policy_quota_grants", "Quota calls that granted a positive amount.", ["handler"],
                       t.quota_grants)
        yield _counter("policy_quota_granted_amount", "Quota units granted.", ["handler"], t.quota_granted_amount)
        yield _counter("policy_quota_denials", "Quota calls that granted nothing, by code.", ["handler", "code"],
                       t.quota_denials)
        errors, timeouts = dict(t.adapter_errors), dict(t.adapter_timeouts)
        service = self._service
        reports = getattr(service, "reports", None)
        report_stats = dict(reports.stats()) if reports is not None else {}
        for handler, stats in report_stats.items():
            if stats.failed_batches:
                errors[(handler, "report")] = stats.failed_batches
            if stats.timed_out_batches:
                timeouts[(handler, "report")] = stats.timed_out_batches
        yield _counter("policy_adapter_errors", "Handler calls that raised, by handler and call.",
                       ["handler", "call"], errors)
        yield _counter("policy_adapter_timeouts", "Handler calls that exceeded the handler's timeout.",
                       ["handler", "call"], timeouts)
        yield from self._reports(reports, report_stats)
        yield from self._cache()
        yield from self._config()
        yield from self._rate_limit()

    def _reports(self, reports: Any, stats: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("policy_report_queue_depth", "Report instances waiting for their handler.",
                                  labels=["handler"])
        for handler, waiting in (dict(reports.depth()) if reports is not None else {}).items():
            depth.add_metric([handler], waiting)
        yield depth
        for field, text in (("accepted", "Report instances queued for delivery."),
                            ("delivered", "Report instances handed to their handler without error."),
                            ("dropped", "Report instances dropped because the handler's queue was full or closed."),
                            ("failed", "Report instances in batches whose delivery raised or timed out.")):
            yield _counter(f"policy_report_{field}", text, ["handler"],
                           {h: getattr(s, field) for h, s in stats.items()})

    def _cache(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        carry = dict(self._telemetry._cache_carry)
        try:
            cache = self._service.dispatcher.cache if self._service is not None else None
        except RuntimeError:  # no config loaded yet
            cache = None
        stats = cache.stats if cache is not None else None
        for field in ("hits", "misses", "evictions"):
            value = carry[field] + (getattr(stats, field) if stats is not None else 0)
            yield CounterMetricFamily(f"policy_decision_cache_{field}", f"Decision cache {field}.", value=value)
        yield GaugeMetricFamily("policy_decision_cache_entries", "Decisions in the current cache.",
                                value=len(cache) if cache is not None else 0)
        yield GaugeMetricFamily("policy_decision_cache_bytes",
                                "Approximate bytes the current cache holds, keys (request values) included.",
                                value=cache.bytes if cache is not None else 0)
        yield GaugeMetricFamily("policy_decision_cache_max_bytes", "The current cache's byte budget.",
                                value=cache.max_bytes if cache is not None else 0)

    def _config(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = getattr(self._service, "reload_status", None)
        if status is None:
            return
        yield GaugeMetricFamily("policy_config_generation", "Config generation in force.", value=status.generation)
        yield GaugeMetricFamily("policy_config_last_reload_success",
                                "1 when the last config (re)load succeeded, 0 when it was rejected.",
                                value=1 if status.ok else 0)
        yield GaugeMetricFamily("policy_config_last_reload_timestamp_seconds",
                                "Unix time of the last config (re)load attempt.", value=status.at)
        yield CounterMetricFamily("policy_config_reloads", "Config reloads applied.", value=status.reloads)
        yield CounterMetricFamily("policy_config_reload_failures", "Config reloads rejected.", value=status.failures)


    def _rate_limit(self) -> Iterator[Any]:
        """The rate-limit service's per-key statistics (envoyproxy/ratelimit's, bounded: see policy.config.ratelimit.stats)."""
        try:
            config = getattr(self._service.snapshot, "rate_limit", None) if self._service is not None else None
        except RuntimeError:  # no config loaded yet
            config = None
        statistics = getattr(config, "statistics", None)
        if statistics is None:
            return
        rows = dict(statistics.by_key)
        for index, stat in enumerate(STATS):
            yield _counter(f"policy_ratelimit_{stat}", f"Rate-limit service hits counted as {stat}, by limit key.",
                           ["key"], {key: row[index] for key, row in rows.items()})
        yield _counter("policy_ratelimit_service_events", "Rate-limit service requests that failed, by reason.",
                       ["event"], dict(statistics.service_counts))


def _counter(name: str, documentation: str, labels: list[str], values: dict[Any, int]) -> Any:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in list(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:9090`` for IPv6) into host and port; ValueError naming the value."""
    text = address.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9090, got {address!r}")
    return host, int(port_text)


__all__ = ["APIS", "LATENCY_BUCKETS", "Histogram", "Telemetry", "parse_listen_address"]
