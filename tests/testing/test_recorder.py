"""The hook recorder sees every hook; the call recorder sees every handler call with its result."""

from __future__ import annotations

import ipaddress

from policy import Code, ListEntry, QuotaArgs
from policy.testing import CallRecorder, HookRecorder
from policy.testing.recorder import hook_specs
from tests.runtime import plugins_for_tests

CONFIG = """
handlers:
  - {name: allow, adapter: script, params: {behaviour: allow}}
  - {name: boom, adapter: script, params: {behaviour: raise}}
  - {name: slow, adapter: async-script, params: {behaviour: deny, delay: 0.01}}
  - {name: counter, adapter: counter, params: {limit: 5}}
  - {name: log, adapter: stdio, params: {logStream: FILE, outputPath: access.log}}
instances:
  - {name: ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
  - {name: requests, template: quota, params: {dimensions: {}}}
  - {name: access, template: logentry, params: {variables: {path: 'request.path | ""'}}}
rules:
  - name: first
    actions: [{handler: allow, instances: [ip]}, {handler: counter, instances: [requests]}]
  - name: crashing
    match: request.path == "/boom"
    actions: [{handler: boom, instances: [ip]}]
  - name: async-deny
    match: request.path == "/slow"
    actions: [{handler: slow, instances: [ip]}]
  - name: log
    actions: [{handler: log, instances: [access]}]
"""


async def test_hook_recorder_sees_every_hook_of_a_service_life(policy_config, policy_service_factory):
    recorder = HookRecorder(attributes={"example.flag": "BOOL"})
    service = await policy_service_factory(policy_config(CONFIG), plugins_for_tests, recorder)
    assert "example.flag" in service.host.vocabulary
    await service.stop()
    names = recorder.names()
    assert names == ["policy_register_templates", "policy_register_adapters", "policy_attributes",
                     "policy_startup", "policy_config_loaded", "policy_shutdown"]
    assert set(names) == set(hook_specs()), "the recorder implements every hookspec"
    (loaded,) = recorder.called("policy_config_loaded")
    assert loaded.kwargs["snapshot"] is service.snapshot
    assert loaded.kwargs["service"] is service


async def test_call_recorder_records_checks_quotas_and_reports(policy_config, policy_service_factory):
    calls = CallRecorder()
    service = await policy_service_factory(policy_config(CONFIG), plugins_for_tests, calls)
    ip = ipaddress.ip_address("10.0.0.1")

    allowed = await service.check({"source.ip": ip, "request.path": "/"},
                                  {"requests": QuotaArgs("requests", 2)})
    assert allowed.allowed
    (check,) = calls.of("allow", "check")
    assert check.instance == ListEntry("ip", ip)
    assert check.result.status.ok and check.result.valid_duration == 30.0
    (quota,) = calls.of("counter", "quota")
    assert quota.args == QuotaArgs("requests", 2) and quota.result.granted_amount == 2

    crashed = await service.check({"source.ip": ip, "request.path": "/boom"})
    assert crashed.code == Code.INTERNAL
    (boom,) = calls.of("boom", "check")
    assert isinstance(boom.error, RuntimeError) and boom.result is None

    denied = await service.check({"source.ip": ip, "request.path": "/slow"})
    assert denied.code == Code.PERMISSION_DENIED
    (slow,) = calls.of("slow", "check")
    assert slow.result.status.message == "scripted denial"

    # A repeat is answered from the decision cache: no handler is called again.
    before = len(calls)
    again = await service.check({"source.ip": ip, "request.path": "/slow"})
    assert again.cache_hit and len(calls) == before

    service.report([{"request.path": "/a"}, {"request.path": "/b"}])
    await service.stop()
    assert [i.variables["path"] for i in calls.instances("log", "report")] == ["/a", "/b"]
    assert {c.handler for c in calls.of(method="close")} == {"allow", "boom", "slow", "counter", "log"}


async def test_wrapped_handlers_keep_their_sync_or_async_nature(policy_config, policy_service_factory):
    calls = CallRecorder()
    service = await policy_service_factory(policy_config(CONFIG), plugins_for_tests, calls)
    entries = service.snapshot.handlers
    assert entries["slow"].handler.wrapped.__class__.__name__ == "AsyncScriptHandler"
    assert entries["slow"].check_is_async and not entries["allow"].check_is_async
    import inspect

    assert inspect.iscoroutinefunction(entries["slow"].handler.check)
    assert not inspect.iscoroutinefunction(entries["allow"].handler.check)
    # Attributes of the real handler stay reachable through the wrapper.
    assert entries["allow"].handler.params.behaviour == "allow"
    calls.clear()
    assert len(calls) == 0
