"""statsd and dogstatsd: reports over gRPC in, datagrams received and parsed by a UDP listener on loopback."""

from __future__ import annotations

import datetime as dt
import logging
import textwrap

import pytest

from policy import ConfigError
from tests.reports.conftest import handler_of, send_reports

INSTANCES = """
instances:
  - name: requestcount
    template: metric
    params:
      value: "1"
      dimensions: {method: request.method | "unknown", code: response.code | 0}
  - name: latency
    template: metric
    params:
      value: response.duration
      dimensions: {method: request.method | "unknown"}
  - name: queue
    template: metric
    params:
      value: request.size | 0
      dimensions: {method: request.method | "unknown"}
  - name: unlisted
    template: metric
    params: {value: "1"}
rules:
  - name: r
    actions: [{handler: stats, instances: [requestcount, latency, queue, unlisted]}]
"""


def _config(adapter: str, address: str, extra: str = "", metrics: str | None = None) -> str:
    metrics = metrics or """
        requestcount: {type: COUNTER, nameTemplate: "requests.{{.method}}-{{ .code }}"}
        latency: {type: DISTRIBUTION}
        queue: {type: GAUGE}"""
    return textwrap.dedent(f"""
        handlers:
          - name: stats
            adapter: {adapter}
            params:
              address: "{address}"
              prefix: mesh
              flushDuration: 50ms
              {extra}
              metrics: {{{metrics.replace(chr(10), ", ").strip(", ")}}}
    """) + INSTANCES


def _request(method: str, code: int, millis: float, size: int) -> dict:
    return {"request.method": method, "response.code": code,
            "response.duration": dt.timedelta(milliseconds=millis), "request.size": size}


async def test_statsd_lines_carry_prefix_template_and_types(policy_server_factory, policy_config, statsd_listener):
    running = await policy_server_factory(policy_config(_config("statsd", statsd_listener.address)), unix=False)
    await send_reports(running, [[_request("GET", 200, 12.5, 3), _request("POST", 503, 250, -2)]])
    await statsd_listener.wait_for(lambda: len(statsd_listener.lines) >= 7, what="7 statsd lines")
    lines = [(line.name, line.value, line.type) for line in statsd_listener.lines]
    assert ("mesh.requests.GET-200", "1", "c") in lines
    assert ("mesh.requests.POST-503", "1", "c") in lines
    assert ("mesh.latency", "12.5", "ms") in lines  # durations in milliseconds
    assert ("mesh.latency", "250", "ms") in lines
    assert ("mesh.queue", "3", "g") in lines
    # A negative statsd gauge would read as a change: it is set to 0, then lowered.
    post_gauge = [value for name, value, kind in lines if name == "mesh.queue"][1:]
    assert post_gauge == ["0", "-2"]
    assert not any("unlisted" in name for name, _, _ in lines)  # not in metrics: not exported
    assert all(line.rate is None and not line.tags for line in statsd_listener.lines)


async def test_datagrams_respect_flush_bytes_and_lose_no_line(policy_server_factory, policy_config, statsd_listener):
    config = _config("statsd", statsd_listener.address, extra="flushBytes: 120",
                     metrics="requestcount: {type: COUNTER, nameTemplate: 'requests.{{.method}}'}")
    running = await policy_server_factory(policy_config(config), unix=False)
    methods = [f"M{i:03d}" for i in range(60)]
    await send_reports(running, [[_request(m, 200, 1, 1) for m in methods[:30]],
                                 [_request(m, 200, 1, 1) for m in methods[30:]]])
    await statsd_listener.wait_for(lambda: len(statsd_listener.lines) >= 60, what="60 lines")
    assert sorted(line.name for line in statsd_listener.lines) == [f"mesh.requests.{m}" for m in methods]
    assert len(statsd_listener.packets) > 1
    assert all(len(packet) <= 120 for packet in statsd_listener.packets), [len(p) for p in statsd_listener.packets]


async def test_a_lone_line_leaves_after_flush_duration(policy_server_factory, policy_config, statsd_listener):
    running = await policy_server_factory(policy_config(_config("statsd", statsd_listener.address)), unix=False)
    await send_reports(running, [[{"request.method": "GET", "request.size": 7}]])
    # One small line never fills a datagram: the flush timer sends it while the handler is open.
    await statsd_listener.wait_for(lambda: any(line.name == "mesh.queue" for line in statsd_listener.lines), what="the timer's flush")


async def test_long_flush_duration_still_delivers_on_shutdown(policy_server_factory, policy_config, statsd_listener):
    config = _config("statsd", statsd_listener.address).replace("flushDuration: 50ms", "flushDuration: 1h")
    running = await policy_server_factory(policy_config(config), unix=False)
    await send_reports(running, [[{"request.method": "GET", "request.size": 7}]])
    assert await running.service.reports.drain(timeout=30)
    datagrams = handler_of(running, "stats")._datagrams
    # The report was handled and its line waits for its datagram to fill up: nothing was sent.
    assert datagrams.pending and datagrams.sent == 0 and statsd_listener.packets == []
    await running.close()
    await statsd_listener.wait_for(lambda: any(line.name == "mesh.queue" for line in statsd_listener.lines), what="the flush on close")


async def test_sampling_marks_lines_and_never_drops_gauges(policy_server_factory, policy_config, statsd_listener):
    config = _config("statsd", statsd_listener.address, extra="samplingRate: 0.5")
    running = await policy_server_factory(policy_config(config), unix=False)
    requests = [_request("GET", 200, 5, 1) for _ in range(400)]
    await send_reports(running, [requests[i:i + 100] for i in range(0, 400, 100)])
    await statsd_listener.wait_for(lambda: sum(line.type == "g" for line in statsd_listener.lines) >= 400, what="400 gauges")
    await running.close()
    counters = [line for line in statsd_listener.lines if line.type == "c"]
    timers = [line for line in statsd_listener.lines if line.type == "ms"]
    gauges = [line for line in statsd_listener.lines if line.type == "g"]
    assert len(gauges) == 400 and all(line.rate is None for line in gauges)
    # Binomial(400, 0.5): 200 ± 10 standard deviation; [120, 280] fails with negligible probability.
    assert 120 <= len(counters) <= 280 and 120 <= len(timers) <= 280
    assert all(line.rate == 0.5 for line in counters + timers)


async def test_dogstatsd_sends_dimensions_and_constant_tags(policy_server_factory, policy_config, statsd_listener):
    config = _config("dogstatsd", statsd_listener.address, extra="tags: {env: prod, team: 'a,b'}")
    running = await policy_server_factory(policy_config(config), unix=False)
    await send_reports(running, [[_request("GET", 200, 12.5, -3)]])
    await statsd_listener.wait_for(lambda: len(statsd_listener.lines) >= 3, what="3 dogstatsd lines")
    by_name = {line.name: line for line in statsd_listener.lines}
    counter = by_name["mesh.requests.GET-200"]
    assert counter.type == "c" and counter.tags == {"env": "prod", "team": "a_b", "method": "GET", "code": "200"}
    latency = by_name["mesh.latency"]
    assert (latency.type, latency.value, latency.tags) == ("d", "12.5", {"env": "prod", "team": "a_b",
                                                                         "method": "GET"})
    assert (by_name["mesh.queue"].type, by_name["mesh.queue"].value) == ("g", "-3")  # absolute in DogStatsD
    assert len([line for line in statsd_listener.lines if line.name == "mesh.queue"]) == 1


async def test_dogstatsd_can_leave_dimensions_out_of_tags(policy_server_factory, policy_config, statsd_listener):
    config = _config("dogstatsd", statsd_listener.address, extra="dimensionsAsTags: false")
    running = await policy_server_factory(policy_config(config), unix=False)
    await send_reports(running, [[_request("GET", 200, 1, 1)]])
    await statsd_listener.wait_for(lambda: len(statsd_listener.lines) >= 3, what="3 lines")
    assert all(line.tags == {} for line in statsd_listener.lines)


async def test_a_template_missing_its_dimension_skips_the_instance(policy_server_factory, policy_config,
                                                                  statsd_listener, caplog):
    config = _config("statsd", statsd_listener.address,
                     metrics="queue: {type: GAUGE, nameTemplate: 'q.{{.region}}'}, "
                             "requestcount: {type: COUNTER}")
    running = await policy_server_factory(policy_config(config), unix=False)
    caplog.set_level(logging.WARNING)
    await send_reports(running, [[_request("GET", 200, 1, 1), _request("GET", 200, 1, 1)]])
    await statsd_listener.wait_for(lambda: len(statsd_listener.lines) >= 2, what="the counters")
    await running.close()
    assert {line.name for line in statsd_listener.lines} == {"mesh.requestcount"}
    warnings = [r.getMessage() for r in caplog.records if "region" in r.getMessage()]
    assert len(warnings) == 1 and "skipped" in warnings[0]


@pytest.mark.parametrize(("params", "field", "message"), [
    ('address: "nohost"', "address", "host:port"),
    ('address: "localhost:99999"', "address", "host:port"),
    ("samplingRate: 0", "samplingRate", "(0, 1]"),
    ("flushBytes: 0", "flushBytes", "must be > 0"),
    ("metrics: {a: {}}", "metrics['a'].type", "is required"),
    ("metrics: {a: {type: COUNTER, nameTemplate: '{{if .x}}y{{end}}'}}", "metrics['a'].nameTemplate",
     "only {{.dimension}}"),
])
async def test_bad_params_are_config_errors_naming_the_field(policy_config, policy_host_factory, params, field,
                                                             message):
    from policy.config import load_config

    config = policy_config(textwrap.dedent(f"""
        handlers:
          - name: stats
            adapter: statsd
            params: {{{params}}}
        instances:
          - {{name: a, template: metric, params: {{value: "1"}}}}
        rules:
          - {{name: r, actions: [{{handler: stats, instances: [a]}}]}}
    """))
    with pytest.raises(ConfigError) as info:
        load_config(config, policy_host_factory())
    text = "\n".join(str(issue) for issue in info.value.issues)
    assert field in text and message in text, text
