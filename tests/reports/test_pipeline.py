"""The report pipeline: a report adapter that hangs or raises never slows or fails a check; drops are counted."""

from __future__ import annotations

import asyncio
import textwrap

from policy.attributes import AttributeBag
from policy.runtime.reports import ReportQueue
from policy.sdk import Code
from policy.testing import native_check
from tests.reports import plugins_for_reports
from tests.reports._receivers import PATIENCE, scrape, wait_until
from tests.reports.conftest import send_reports


def _config(adapter: str, timeout: str = "30s") -> str:
    return textwrap.dedent(f"""
        handlers:
          - {{name: sink, adapter: {adapter}, timeout: {timeout}}}
          - name: deny
            adapter: denier
            params: {{status: {{code: 7, message: blocked}}, validDuration: 60s}}
        instances:
          - name: entry
            template: logentry
            params: {{severity: '"info"', variables: {{path: request.path | ""}}}}
          - {{name: nothing, template: checknothing, params: {{}}}}
        rules:
          - {{name: log, actions: [{{handler: sink, instances: [entry]}}]}}
          - name: block-mallory
            match: request.headers["x-user"] == "mallory"
            actions: [{{handler: deny, instances: [nothing]}}]
    """)


async def _checks(stub, count: int, user: str = "alice") -> int:
    """Send ``count`` checks, each answered as its rule says; returns how many were answered."""
    for i in range(count):
        response = await native_check(stub, {"request.id": f"r{i}", "request.headers": {"x-user": user}})
        assert response.precondition.status.code == (Code.PERMISSION_DENIED if user == "mallory" else Code.OK)
    return count


async def test_a_blocked_report_adapter_never_holds_up_checks(policy_server_factory, policy_config):
    """Checks are answered while the report adapter sits blocked (how fast is benchmarks/bench_reports.py's job)."""
    running = await policy_server_factory(policy_config(_config("blocking")), plugins_for_reports, unix=False)
    service = running.service
    stub = running.native()
    handler = service.snapshot.handlers["sink"].handler
    await send_reports(running, [[{"request.path": "/a"}] * 20])
    assert await asyncio.to_thread(handler.entered.wait, PATIENCE), "the adapter never blocked in report()"
    reporting = asyncio.create_task(send_reports(running, [[{"request.path": "/b"}] * 20 for _ in range(20)]))
    answered = await _checks(stub, 300) + await _checks(stub, 20, user="mallory")
    await reporting

    # Every check above completed while the adapter sat blocked in report().
    assert handler.entered.is_set() and not handler.gate.is_set() and handler.received == 0
    assert service.reports.depth()["sink"] > 0
    assert answered == 320

    handler.release()
    assert await service.reports.drain(timeout=10)
    assert handler.received == 20 + 400


async def test_a_hanging_async_report_adapter_times_out_and_checks_go_on(policy_server_factory, policy_config):
    running = await policy_server_factory(policy_config(_config("hanging", timeout="100ms")), plugins_for_reports,
                                          unix=False, metrics_listen="127.0.0.1:0")
    service = running.service
    await send_reports(running, [[{"request.path": "/a"}] * 5, [{"request.path": "/b"}] * 5])
    responses = await asyncio.gather(*(native_check(running.native(), {"request.id": str(i)}) for i in range(50)))
    assert all(r.precondition.status.code == Code.OK for r in responses)
    assert await service.reports.drain(timeout=5)  # every batch ended: timed out, not stuck
    result = await scrape(service.telemetry.metrics_address)
    assert result.value("policy_adapter_timeouts_total", handler="sink", call="report") >= 1
    assert result.value("policy_report_failed_total", handler="sink") == 10
    assert result.value("policy_report_delivered_total", handler="sink") == 0


async def test_a_raising_report_adapter_is_counted_not_felt(policy_server_factory, policy_config, caplog):
    running = await policy_server_factory(policy_config(_config("raising")), plugins_for_reports, unix=False,
                                          metrics_listen="127.0.0.1:0")
    service = running.service
    await send_reports(running, [[{"request.path": "/a"}] * 3])
    response = await native_check(running.native(), {"request.headers": {"x-user": "mallory"}})
    assert response.precondition.status.code == Code.PERMISSION_DENIED  # the check answers as configured
    assert await service.reports.drain(timeout=5)
    result = await scrape(service.telemetry.metrics_address)
    assert result.value("policy_adapter_errors_total", handler="sink", call="report") == 1
    assert result.value("policy_report_failed_total", handler="sink") == 3
    assert any("the backend is on fire" in r.getMessage() for r in caplog.records)


async def test_a_full_queue_drops_and_exports_the_drops(policy_server_factory, policy_config):
    running = await policy_server_factory(policy_config(_config("blocking")), plugins_for_reports, unix=False,
                                          metrics_listen="127.0.0.1:0", reports=ReportQueue(max_queue=10, batch_size=5))
    service = running.service
    handler = service.snapshot.handlers["sink"].handler
    await send_reports(running, [[{"request.path": f"/{i}"} for i in range(50)]])  # one Report: 50 puts at once
    assert await asyncio.to_thread(handler.entered.wait, PATIENCE), "no batch reached the adapter"
    result = await scrape(service.telemetry.metrics_address)
    # Ten fit in the queue; the worker had not run yet, so the other forty were dropped, and said so.
    assert result.value("policy_report_accepted_total", handler="sink") == 10
    assert result.value("policy_report_dropped_total", handler="sink") == 40
    assert result.value("policy_report_queue_depth", handler="sink") == 5  # one batch of 5 is in the adapter
    handler.release()
    assert await service.reports.drain(timeout=10)
    assert handler.received == 10
    result = await scrape(service.telemetry.metrics_address)
    assert result.value("policy_report_delivered_total", handler="sink") == 10
    assert result.value("policy_report_queue_depth", handler="sink") == 0


async def test_a_drain_that_gives_up_counts_what_it_leaves(policy_config, policy_service_factory):
    queue = ReportQueue(max_queue=100, batch_size=5)
    service = await policy_service_factory(policy_config(_config("blocking")), plugins_for_reports, reports=queue)
    handler = service.snapshot.handlers["sink"].handler
    service.report([{"request.path": f"/{i}"} for i in range(12)])
    assert await asyncio.to_thread(handler.entered.wait, PATIENCE), "no batch reached the adapter"
    assert not await queue.close(timeout=0.2)  # the adapter is still blocked: give up
    stats = queue.stats()["sink"]
    assert (stats.accepted, stats.dropped, stats.delivered) == (12, 12, 0)  # nothing unaccounted for
    handler.release()


async def test_report_counters_keep_growing_across_a_reload(policy_config, policy_service_factory, tmp_path):
    params = f'params: {{logStream: FILE, outputPath: "{tmp_path / "r.log"}"}}'
    config = policy_config(_config("stdio").replace("adapter: stdio, timeout: 30s", f"adapter: stdio, {params}"))
    service = await policy_service_factory(config, retire_grace=0.05)
    service.report([{"request.path": "/a"}] * 3)
    assert await service.reports.drain(timeout=5)
    assert await service.reload(force=True)
    service.report([{"request.path": "/b"}] * 2)
    assert await service.reports.drain(timeout=5)
    await wait_until(lambda: not service._retiring, what="the old snapshot to retire")
    stats = service.reports.stats()["sink"]
    assert (stats.accepted, stats.delivered) == (5, 5)  # one handler name, one set of counters
    assert (tmp_path / "r.log").read_text().count("\n") == 5


async def test_a_timed_out_sync_call_holds_its_lane_and_the_rest_waits_in_the_bounded_queue(
        policy_config, policy_service_factory):
    # A plain (thread) adapter whose call times out keeps running: the lane hands it nothing more
    # until it returns, so instances wait in the bounded queue (overflow dropped, counted) instead
    # of piling up as batches behind the hung call (which grew without bound before).
    queue = ReportQueue(max_queue=20, batch_size=5, linger=0)
    service = await policy_service_factory(policy_config(_config("blocking", timeout="50ms")), plugins_for_reports,
                                           reports=queue)
    handler = service.snapshot.handlers["sink"].handler
    service.report([{"request.path": f"/{i}"} for i in range(5)])
    await wait_until(handler.entered.is_set, what="the first batch to reach the adapter")
    stats = queue.stats()["sink"]
    await wait_until(lambda: stats.timed_out_batches == 1, what="the first call to time out")
    service.report([{"request.path": f"/more/{i}"} for i in range(50)])
    await wait_until(lambda: stats.stalls >= 1, what="the worker to wait for the hung call")
    lane = next(iter(queue._lanes.values()))
    assert lane.thread._calls.qsize() == 0  # nothing queued behind the hung call
    assert queue.depth()["sink"] == 20 and (stats.accepted, stats.dropped) == (25, 30)
    assert stats.timed_out_batches == 1
    handler.release()
    assert await queue.drain(timeout=10)
    assert handler.received == 25 and (stats.delivered, stats.failed) == (20, 5)


async def test_an_instance_several_actions_send_is_built_once_and_each_handler_gets_it(
        policy_config, policy_service_factory, caplog):
    config = textwrap.dedent("""
        handlers:
          - {name: one, adapter: recorder}
          - {name: two, adapter: recorder}
        instances:
          - name: entry
            template: logentry
            params: {severity: '"info"', variables: {path: request.path | "", size: request.size}}
          - name: broken
            template: logentry
            params: {variables: {address: ip(request.path)}}
          - {name: other, template: reportnothing, params: {}}
        rules:
          - {name: both, actions: [{handler: one, instances: [entry, broken, other]}, {handler: two, instances: [entry]}]}
          - {name: again, actions: [{handler: two, instances: [broken, entry]}]}
    """)
    service = await policy_service_factory(policy_config(config), plugins_for_reports)
    # The first bag's "broken" fails to build (not an IP): skipped for both actions, logged once.
    assert service.report([{"request.path": "/a", "request.size": 3}, {"request.size": 4}]) == 10
    assert await service.reports.drain(timeout=10)
    one, two = (service.snapshot.handlers[name].handler for name in ("one", "two"))
    assert [(i.name, dict(getattr(i, "variables", {}))) for i in one.instances] == [
        ("entry", {"path": "/a", "size": 3}), ("other", {}),
        ("entry", {"path": "", "size": 4}), ("broken", {}), ("other", {})]
    assert [(i.name, dict(i.variables)) for i in two.instances] == [
        ("entry", {"path": "/a", "size": 3}), ("entry", {"path": "/a", "size": 3}),
        ("entry", {"path": "", "size": 4}), ("broken", {}), ("entry", {"path": "", "size": 4})]
    assert one.instances[0] is two.instances[0] is two.instances[1]  # built once for the bag
    assert one.instances[2] is two.instances[2] and one.instances[2] is not one.instances[0]  # again per bag
    assert len([r for r in caplog.records if "instance broken failed" in r.getMessage()]) == 1


async def test_a_deferred_record_that_cannot_be_built_spares_the_others(policy_config, policy_service_factory, caplog):
    config = textwrap.dedent("""
        handlers:
          - {name: one, adapter: recorder}
        instances:
          - {name: entry, template: logentry, params: {variables: {path: request.path | ""}}}
        rules:
          - {name: all, actions: [{handler: one, instances: [entry]}]}
    """)
    service = await policy_service_factory(policy_config(config), plugins_for_reports)

    def make(path):
        if path is None:
            raise ValueError("no record")
        return AttributeBag({"request.path": path})

    for path in ("/a", None, "/b"):
        service.dispatcher.report_soon(make, path)
    assert await service.reports.drain(timeout=10)
    one = service.snapshot.handlers["one"].handler
    assert [i.variables["path"] for i in one.instances] == ["/a", "/b"]
    assert any("could not be built" in r.getMessage() for r in caplog.records)
