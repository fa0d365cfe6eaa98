"""The prometheus adapter, end to end: reports over gRPC in, the service's metrics endpoint scraped over HTTP."""

from __future__ import annotations

import datetime as dt
import logging
import textwrap

import pytest

from policy import ConfigError
from tests.reports._receivers import scrape
from tests.reports.conftest import send_reports

METRICS = """
handlers:
  - name: prom
    adapter: prometheus
    params:
      metrics:
        - instanceName: requestcount
          kind: COUNTER
          name: requests_total
          description: Requests seen.
          labelNames: [method, code]
        - instanceName: duration
          kind: DISTRIBUTION
          name: request_duration_seconds
          labelNames: [method]
          buckets: {explicitBuckets: {bounds: [0.1, 0.5, 1]}}
        - instanceName: size
          kind: GAUGE
          namespace: shop
          name: last-request.size
          labelNames: [method]
instances:
  - name: requestcount
    template: metric
    params:
      value: "1"
      dimensions: {method: request.method | "unknown", code: response.code | 0}
  - name: duration
    template: metric
    params:
      value: response.duration
      dimensions: {method: request.method | "unknown"}
  - name: size
    template: metric
    params:
      value: request.size | 0
      dimensions: {method: request.method | "unknown"}
rules:
  - name: metrics
    actions: [{handler: prom, instances: [requestcount, duration, size]}]
"""


def _request(method: str, code: int, seconds: float, size: int) -> dict:
    return {"request.method": method, "response.code": code, "response.duration": dt.timedelta(seconds=seconds),
            "request.size": size}


async def _serve(policy_server_factory, policy_config, text: str):
    running = await policy_server_factory(policy_config(textwrap.dedent(text)), unix=False,
                                          metrics_listen="127.0.0.1:0")
    assert running.service.telemetry.metrics_address
    return running


async def test_counters_histograms_and_gauges_reach_the_service_endpoint(policy_server_factory, policy_config):
    running = await _serve(policy_server_factory, policy_config, METRICS)
    await send_reports(running, [
        [_request("GET", 200, 0.05, 10), _request("GET", 200, 0.3, 20)],
        [_request("GET", 200, 2.0, 30), _request("POST", 500, 0.1, 40)],
    ])
    assert await running.service.reports.drain(timeout=5)
    result = await scrape(running.service.telemetry.metrics_address)

    assert result.value("istio_requests_total", method="GET", code="200") == 3
    assert result.value("istio_requests_total", method="POST", code="500") == 1
    assert result.families["istio_requests"].type == "counter"
    assert result.families["istio_requests"].documentation == "Requests seen."

    family = result.families["istio_request_duration_seconds"]
    assert family.type == "histogram"
    buckets = {labels: v for labels, v in result.with_name("istio_request_duration_seconds_bucket").items()
               if ("method", "GET") in labels}
    by_le = {dict(labels)["le"]: v for labels, v in buckets.items()}
    # 0.05 and 0.1 fall at or under 0.1 (le is inclusive), 0.3 under 0.5, 2.0 only under +Inf.
    assert by_le == {"0.1": 1, "0.5": 2, "1.0": 2, "+Inf": 3}
    assert result.value("istio_request_duration_seconds_count", method="GET") == 3
    assert result.value("istio_request_duration_seconds_sum", method="GET") == pytest.approx(2.35)
    assert result.value("istio_request_duration_seconds_bucket", method="POST", le="0.1") == 1

    # A gauge is set, not added; names are made safe as Mixer did ('.' → '_', '-' removed).
    assert result.value("shop_lastrequest_size", method="GET") == 30
    assert result.value("shop_lastrequest_size", method="POST") == 40

    # The service's own metrics are served beside the adapter's, counting what was delivered.
    assert result.value("policy_report_delivered_total", handler="prom") == 12
    assert result.value("policy_report_dropped_total", handler="prom") == 0


async def test_linear_and_exponential_buckets_follow_mixer(policy_server_factory, policy_config):
    running = await _serve(policy_server_factory, policy_config, """
        handlers:
          - name: prom
            adapter: prometheus
            params:
              metrics:
                - {instanceName: lin, kind: DISTRIBUTION, labelNames: [],
                   buckets: {linearBuckets: {numFiniteBuckets: 3, width: 10, offset: 5}}}
                - {instanceName: exp, kind: DISTRIBUTION, name: exp_seconds,
                   buckets: {exponentialBuckets: {numFiniteBuckets: 3, growthFactor: 2, scale: 0.5}}}
        instances:
          - {name: lin, template: metric, params: {value: request.size}}
          - {name: exp, template: metric, params: {value: request.size}}
        rules:
          - {name: r, actions: [{handler: prom, instances: [lin, exp]}]}
    """)
    await send_reports(running, [[{"request.size": 12}, {"request.size": 3}]])
    assert await running.service.reports.drain(timeout=5)
    result = await scrape(running.service.telemetry.metrics_address)
    linear = {dict(k)["le"]: v for k, v in result.with_name("istio_lin_bucket").items()}
    exponential = {dict(k)["le"]: v for k, v in result.with_name("istio_exp_seconds_bucket").items()}
    # numFiniteBuckets + 1 upper bounds: offset + width*i and scale * growthFactor^i.
    assert linear == {"5.0": 1, "15.0": 2, "25.0": 2, "35.0": 2, "+Inf": 2}
    assert exponential == {"0.5": 0, "1.0": 0, "2.0": 0, "4.0": 1, "+Inf": 2}


async def test_series_not_updated_expire(policy_fake_clock):
    """Expiry follows the clock the handler is built with: a FakeClock moved past the expiry, no waiting."""
    from prometheus_client import CollectorRegistry

    from adapters.prometheus import Prometheus
    from policy import BuildContext, Metric, parse_params

    params = parse_params(Prometheus.Params, {
        "metrics": [{"instanceName": "hits", "kind": "COUNTER", "labelNames": ["path"]}],
        "metricsExpirationPolicy": {"metricsExpiryDuration": "300ms", "expiryCheckIntervalDuration": "50ms"}})
    registry = CollectorRegistry()
    handler = Prometheus.build(params, BuildContext(handler="prom", clock=policy_fake_clock.clock,
                                                    metrics_registry=registry))  # type: ignore[arg-type]

    def hits(path: str) -> float | None:
        return registry.get_sample_value("istio_hits_total", {"path": path})

    await handler.report([Metric("hits", 1, {"path": "/old"})])
    policy_fake_clock.advance(0.2)
    await handler.report([Metric("hits", 1, {"path": "/fresh"})])
    assert hits("/old") == 1  # 200 ms old: alive
    policy_fake_clock.advance(0.2)
    assert hits("/old") is None, "400 ms without an update: expired at this scrape"
    assert hits("/fresh") == 1  # updated 200 ms ago: kept
    policy_fake_clock.advance(0.2)
    assert hits("/fresh") is None
    await handler.close()


async def test_reload_keeps_unchanged_metrics_and_restarts_redefined_ones(policy_server_factory, policy_config):
    text = """
        handlers:
          - name: prom
            adapter: prometheus
            params:
              metrics:
                - {instanceName: kept, kind: COUNTER}
                - {instanceName: changed, kind: COUNTER, labelNames: [LABELS]}
        instances:
          - {name: kept, template: metric, params: {value: "1"}}
          - {name: changed, template: metric, params: {value: "1", dimensions: {a: '"x"', b: '"y"'}}}
        rules:
          - {name: r, actions: [{handler: prom, instances: [kept, changed]}]}
    """
    config = policy_config(textwrap.dedent(text.replace("LABELS", "a")))
    running = await policy_server_factory(config, unix=False, metrics_listen="127.0.0.1:0")
    service = running.service
    await send_reports(running, [[{}, {}]])
    assert await service.reports.drain(timeout=5)
    policy_config(textwrap.dedent(text.replace("LABELS", "a, b")))
    assert await service.reload(force=True)
    await send_reports(running, [[{}]])
    await service.reports.drain(timeout=5)
    result = await scrape(service.telemetry.metrics_address)
    assert result.value("istio_kept_total") == 3  # the same definition keeps counting across the reload
    assert result.value("istio_changed_total", a="x", b="y") == 1  # new labels: started over
    assert result.value("istio_changed_total", a="x") is None
    assert result.value("policy_config_generation") == 2


async def test_values_that_cannot_be_recorded_are_skipped_and_logged_once(policy_server_factory, policy_config,
                                                                         caplog):
    running = await _serve(policy_server_factory, policy_config, """
        handlers:
          - name: prom
            adapter: prometheus
            params:
              metrics:
                - {instanceName: size, kind: COUNTER, labelNames: [path]}
        instances:
          - {name: size, template: metric, params: {value: 'request.headers["x-size"]', dimensions: {path: request.path}}}
          - {name: orphan, template: metric, params: {value: "1"}}
        rules:
          - {name: r, actions: [{handler: prom, instances: [size, orphan]}]}
    """)
    caplog.set_level(logging.WARNING)
    await send_reports(running, [[
        {"request.path": "/a", "request.headers": {"x-size": "2.5"}},
        {"request.path": "/b", "request.headers": {"x-size": "lots"}},
        {"request.path": "/c", "request.headers": {"x-size": "-1"}},
        {"request.path": "/a", "request.headers": {"x-size": "lots"}},
    ]])
    assert await running.service.reports.drain(timeout=5)
    result = await scrape(running.service.telemetry.metrics_address)
    assert result.value("istio_size_total", path="/a") == 2.5
    assert result.value("istio_size_total", path="/b") is None
    assert result.value("istio_size_total", path="/c") is None
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("policy.adapter.prom")]
    assert sum("not a number" in w or "numeric string" in w for w in warnings) == 1
    assert sum("cannot decrease" in w for w in warnings) == 1
    assert sum("no metrics[] entry takes this instance" in w for w in warnings) == 1
    # Skipped values are the adapter's business: the batch itself was delivered.
    assert result.value("policy_report_failed_total", handler="prom") == 0


@pytest.mark.parametrize(("metric", "field", "message"), [
    ("{instanceName: a}", "metrics[0].kind", "is required"),
    ("{instanceName: a, kind: COUNTER, labelNames: ['9x']}", "metrics[0].labelNames[0]", "not a valid"),
    ("{instanceName: a, kind: DISTRIBUTION, labelNames: [le]}", "metrics[0].labelNames[0]", "reserved"),
    ("{instanceName: a, kind: DISTRIBUTION, buckets: {linearBuckets: {numFiniteBuckets: 0, width: 1}}}",
     "metrics[0].buckets.linearBuckets.numFiniteBuckets", "must be > 0"),
    ("{instanceName: a, kind: DISTRIBUTION, buckets: {exponentialBuckets: {numFiniteBuckets: 2, growthFactor: 1,"
     " scale: 1}}}", "metrics[0].buckets.exponentialBuckets.growthFactor", "must be > 1"),
    ("{instanceName: a, kind: DISTRIBUTION, buckets: {explicitBuckets: {bounds: [1, 1]}}}",
     "metrics[0].buckets.explicitBuckets.bounds", "strictly increasing"),
    ("{instanceName: a, kind: DISTRIBUTION, buckets: {}}", "metrics[0].buckets", "exactly one"),
    ("{instanceName: a, kind: GAUGE, name: 'b c'}, {instanceName: d, kind: GAUGE, name: b_c}",
     "metrics[1].name", "already defined"),
])
async def test_bad_params_are_config_errors_naming_the_field(policy_config, policy_host_factory, metric, field,
                                                             message):
    from policy.config import load_config

    config = policy_config(textwrap.dedent(f"""
        handlers:
          - name: prom
            adapter: prometheus
            params:
              metrics: [{metric}]
        instances:
          - {{name: a, template: metric, params: {{value: "1"}}}}
        rules:
          - {{name: r, actions: [{{handler: prom, instances: [a]}}]}}
    """))
    with pytest.raises(ConfigError) as info:
        load_config(config, policy_host_factory())
    text = "\n".join(str(issue) for issue in info.value.issues)
    assert field in text and message in text, text
