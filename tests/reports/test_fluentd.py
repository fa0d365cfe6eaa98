"""fluentd: reports over gRPC in, forward-protocol events decoded by a msgpack TCP server on loopback."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from policy import ConfigError
from tests.reports._receivers import ForwardReceiver, refusing_address, scrape
from tests.reports.conftest import handler_of, send_reports

WHEN = dt.datetime(2026, 11, 25, 12, 30, 15, 250000, tzinfo=dt.timezone.utc)


def _config(address: str, params: str = "") -> str:
    return textwrap.dedent(f"""
        handlers:
          - name: fluent
            adapter: fluentd
            params: {{address: "{address}", {params}}}
        instances:
          - name: accesslog
            template: logentry
            params:
              severity: '"info"'
              timestamp: request.time
              variables:
                path: request.path | ""
                latency: response.duration | "0s"
                source: source.ip | ip("0.0.0.0")
          - name: audit
            template: logentry
            params:
              severity: '"warning"'
              timestamp: request.time
              variables: {{tag: '"audit.trail"', user: 'request.headers["x-user"] | ""'}}
        rules:
          - name: r
            actions: [{{handler: fluent, instances: [accesslog, audit]}}]
    """)


def _request(path: str, millis: int = 1500) -> dict:
    import ipaddress

    return {"request.path": path, "response.duration": dt.timedelta(milliseconds=millis), "request.time": WHEN,
            "source.ip": ipaddress.ip_address("10.1.2.3"), "request.headers": {"x-user": "alice"}}


async def test_events_carry_mixers_tag_record_and_time(policy_server_factory, policy_config, forward_receiver):
    running = await policy_server_factory(policy_config(_config(forward_receiver.address, "batchSize: 1")),
                                          unix=False)
    await send_reports(running, [[_request("/books")]])
    await forward_receiver.wait_for(lambda: len(forward_receiver.events) == 2, what="2 events")
    by_tag = {e.tag: e for e in forward_receiver.events}
    access = by_tag["accesslog"]
    assert access.record == {"path": "/books", "latency": "1.5s", "source": "10.1.2.3", "severity": "info"}
    assert access.time == int(WHEN.timestamp()) and not access.event_time  # whole seconds by default
    audit = by_tag["audit.trail"]  # a 'tag' variable is the tag; the instance name moves into the record
    assert audit.record == {"user": "alice", "severity": "warning", "name": "audit"}


async def test_integer_durations_and_sub_second_times(policy_server_factory, policy_config, forward_receiver):
    config = _config(forward_receiver.address, "batchSize: 1, integerDuration: true, subSecondPrecision: true")
    running = await policy_server_factory(policy_config(config), unix=False)
    await send_reports(running, [[_request("/x", millis=250)]])
    await forward_receiver.wait_for(lambda: len(forward_receiver.events) == 2, what="2 events")
    access = next(e for e in forward_receiver.events if e.tag == "accesslog")
    assert access.record["latency"] == 250
    assert access.event_time and access.time == pytest.approx(WHEN.timestamp(), abs=1e-6)


async def test_pushes_full_batches_and_the_rest_on_close(policy_server_factory, policy_config, forward_receiver):
    config = _config(forward_receiver.address, "batchSize: 10, pushInterval: 1h")
    running = await policy_server_factory(policy_config(config), unix=False)
    reports = running.service.reports
    handler = handler_of(running, "fluent")
    await send_reports(running, [[_request(f"/{i}")] for i in range(4)])  # 8 events: not a batch yet
    assert await reports.drain(timeout=30)
    assert (handler.sent, len(handler._buffer)) == (0, 8)  # handled, buffered, nothing sent
    await send_reports(running, [[_request(f"/{i}")] for i in range(4, 6)])  # 12 waiting: pushed
    await forward_receiver.wait_for(lambda: len(forward_receiver.events) == 12, what="the full batch")
    await send_reports(running, [[_request("/6")]])
    assert await reports.drain(timeout=30)
    assert (handler.sent, len(handler._buffer)) == (12, 2)  # 2 wait for a full batch or the interval
    assert len(forward_receiver.events) == 12
    await running.close()
    await forward_receiver.wait_for(lambda: len(forward_receiver.events) == 14, what="the rest, pushed on close")
    paths = [e.record["path"] for e in forward_receiver.events if e.tag == "accesslog"]
    assert paths == [f"/{i}" for i in range(7)]


async def test_push_interval_sends_a_partial_batch(policy_server_factory, policy_config, forward_receiver):
    config = _config(forward_receiver.address, "batchSize: 1000, pushInterval: 100ms")
    running = await policy_server_factory(policy_config(config), unix=False)
    await send_reports(running, [[_request("/a")]])
    await forward_receiver.wait_for(lambda: len(forward_receiver.events) == 2, what="the timer's push")
    assert running.service.reports.stats()["fluent"].failed == 0


async def test_events_wait_while_fluentd_is_down_and_arrive_once_in_order(policy_server_factory, policy_config):
    sock, address = refusing_address()  # fluentd is down; its port stays ours
    config = _config(address, "batchSize: 1, pushInterval: 50ms")
    running = await policy_server_factory(policy_config(config), unix=False)
    await send_reports(running, [[_request(f"/{i}")] for i in range(5)])
    assert await running.service.reports.drain(timeout=30)
    receiver = await ForwardReceiver().start(sock)  # fluentd comes up
    try:
        await receiver.wait_for(lambda: len(receiver.events) == 10, what="the events buffered while fluentd was down")
        paths = [e.record["path"] for e in receiver.events if e.tag == "accesslog"]
        assert paths == [f"/{i}" for i in range(5)]
        assert running.service.reports.stats()["fluent"].failed == 0  # buffered, not lost
    finally:
        await running.close()
        await receiver.close()


async def test_a_full_buffer_drops_and_the_drop_is_counted(policy_server_factory, policy_config, request):
    sock, address = refusing_address()
    config = _config(address, "batchSize: 100, instanceBufferSize: 4, pushInterval: 1h")
    running = await policy_server_factory(policy_config(config), unix=False, metrics_listen="127.0.0.1:0")
    request.addfinalizer(sock.close)
    await send_reports(running, [[_request(f"/{i}") for i in range(5)]])  # 10 events for 4 places
    assert await running.service.reports.drain(timeout=5)
    result = await scrape(running.service.telemetry.metrics_address)
    # report() raised for the batch, so the pipeline counts the whole batch (10) as failed.
    assert result.value("policy_report_failed_total", handler="fluent") == 10
    assert result.value("policy_adapter_errors_total", handler="fluent", call="report") == 1


@pytest.mark.parametrize(("params", "field", "message"), [
    ('address: "nohost"', "address", "host:port"),
    ("batchSize: 0", "batchSize", "must be > 0"),
    ("instanceBufferSize: -1", "instanceBufferSize", "must be > 0"),
    ("pushInterval: 0s", "pushInterval", "longer than 0s"),
])
async def test_bad_params_are_config_errors_naming_the_field(policy_config, policy_host_factory, params, field,
                                                             message):
    from policy.config import load_config

    config = policy_config(_config("127.0.0.1:24224").replace('address: "127.0.0.1:24224", ', params + ", "))
    with pytest.raises(ConfigError) as info:
        load_config(config, policy_host_factory())
    text = "\n".join(str(issue) for issue in info.value.issues)
    assert field in text and message in text, text
