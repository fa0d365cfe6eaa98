"""Dispatch through a real config: combination, fail modes, timeouts, caching, quotas."""

from __future__ import annotations

import ipaddress

import pytest

from policy.sdk import Code, QuotaArgs
from tests.runtime import plugins_for_tests

CONFIG = """
handlers:
  - {name: allow, adapter: script, params: {behaviour: allow, validDuration: 30, validUseCount: 100}}
  - {name: allow-short, adapter: script, params: {behaviour: allow, validDuration: 5, validUseCount: 1000}}
  - {name: deny, adapter: script, params: {behaviour: deny}}
  - {name: silent, adapter: script, params: {behaviour: silent}}
  - {name: broken, adapter: script, params: {behaviour: raise}}
  - {name: broken-open, adapter: script, failMode: OPEN, params: {behaviour: raise}}
  - {name: down, adapter: script, params: {behaviour: adapter-error}}
  - {name: slow, adapter: async-script, timeout: 0.05, params: {behaviour: allow, delay: 1.0}}
  - {name: async-deny, adapter: async-script, params: {behaviour: deny, delay: 0.001}}
  - {name: counter, adapter: counter, params: {limit: 3}}
instances:
  - {name: nothing, template: checknothing, params: {}}
  - {name: user-quota, template: quota, params: {dimensions: {user: 'request.headers["x-user"] | "anon"'}}}
rules:
  - name: always
    actions: [{handler: allow, instances: [nothing]}]
  - name: short
    match: request.path == "/short"
    actions: [{handler: allow-short, instances: [nothing]}]
  - name: denied
    match: request.path == "/deny"
    actions: [{handler: deny, instances: [nothing]}]
  - name: silent
    match: request.path == "/silent"
    actions: [{handler: silent, instances: [nothing]}]
  - name: broken
    match: request.path == "/broken"
    actions: [{handler: broken, instances: [nothing]}]
  - name: broken-open
    match: request.path == "/broken-open"
    actions: [{handler: broken-open, instances: [nothing]}]
  - name: down
    match: request.path == "/down"
    actions: [{handler: down, instances: [nothing]}]
  - name: slow
    match: request.path == "/slow"
    actions: [{handler: slow, instances: [nothing]}]
  - name: async-deny
    match: request.path == "/async-deny"
    actions: [{handler: async-deny, instances: [nothing]}]
  - name: quota
    actions: [{handler: counter, instances: [user-quota]}]
"""


@pytest.fixture
async def service(policy_config, policy_service_factory):
    return await policy_service_factory(policy_config(CONFIG), plugins_for_tests)


async def test_allowed_decision_takes_the_minimum_cacheability(service):
    decision = await service.check({"request.path": "/short"})
    assert decision.allowed
    assert decision.rules == ("always", "short", "quota")

    assert decision.valid_duration == 5 and decision.valid_use_count == 100


async def test_denial_names_the_handler(service):
    decision = await service.check({"request.path": "/deny"})
    assert decision.code == Code.PERMISSION_DENIED
    assert decision.message == "deny: scripted denial"


async def test_async_denial_is_awaited(service):
    decision = await service.check({"request.path": "/async-deny"})
    assert decision.code == Code.PERMISSION_DENIED
    assert "async-deny" in decision.message


async def test_an_adapter_that_declares_nothing_is_not_cached(service):
    first = await service.check({"request.path": "/silent"})
    assert first.allowed and first.valid_duration is None
    second = await service.check({"request.path": "/silent"})
    assert not second.cache_hit


async def test_a_raising_adapter_fails_closed_naming_the_handler(service):
    decision = await service.check({"request.path": "/broken"})
    assert decision.code == Code.INTERNAL
    assert decision.message.startswith("broken: adapter script failed: RuntimeError: boom")
    assert decision.valid_duration in (0, 0.0, None)


async def test_fail_open_allows_without_caching(service):
    decision = await service.check({"request.path": "/broken-open"})
    assert decision.allowed
    again = await service.check({"request.path": "/broken-open"})
    assert not again.cache_hit


async def test_adapter_error_keeps_its_code(service):
    decision = await service.check({"request.path": "/down"})
    assert decision.code == Code.UNAVAILABLE
    assert decision.message == "down: backend down"


async def test_timeout_becomes_deadline_exceeded(service):
    decision = await service.check({"request.path": "/slow"})
    assert decision.code == Code.DEADLINE_EXCEEDED
    assert "slow" in decision.message and "timed out" in decision.message


async def test_requests_differing_in_unread_attributes_share_a_cache_entry(service):
    handler = service.snapshot.handlers["allow"].handler
    first = await service.check({"request.path": "/", "request.id": "a"})
    second = await service.check({"request.path": "/", "request.id": "b",
                                  "source.ip": ipaddress.ip_address("10.0.0.1")})
    assert not first.cache_hit and second.cache_hit
    assert len(handler.calls) == 1
    assert first.decision_id != second.decision_id
    third = await service.check({"request.path": "/other"})
    assert not third.cache_hit
    assert len(handler.calls) == 2


async def test_referenced_attributes_report_presence(service):
    decision = await service.check({"request.path": "/"})
    refs = {(r.name, r.map_key): r.presence.value for r in decision.referenced}
    assert refs[("request.path", None)] == "EXACT"
    assert ("request.id", None) not in refs


async def test_quota_is_charged_per_dimension_and_never_over(service):
    quotas = {"user-quota": QuotaArgs("user-quota", 1)}
    results = [await service.check({"request.path": "/", "request.headers": {"x-user": "ann"}}, quotas)
               for _ in range(5)]
    assert [r.quotas["user-quota"].granted_amount for r in results] == [1, 1, 1, 0, 0]
    assert results[3].code == Code.RESOURCE_EXHAUSTED
    assert results[3].message.startswith("counter:")
    other = await service.check({"request.path": "/", "request.headers": {"x-user": "bob"}}, quotas)
    assert other.allowed and other.quotas["user-quota"].granted_amount == 1


async def test_a_quota_no_rule_charges_is_granted_in_full(service):
    decision = await service.check({"request.path": "/"}, {"unknown": QuotaArgs("unknown", 7)})
    assert decision.quotas["unknown"].granted_amount == 7 and decision.allowed


async def test_quota_is_not_charged_when_the_precondition_denies(service):
    counter = service.snapshot.handlers["counter"].handler
    decision = await service.check({"request.path": "/deny"}, {"user-quota": QuotaArgs("user-quota", 1)})
    assert not decision.allowed and decision.quotas == {}
    assert counter.used == {}


async def test_handlers_are_closed_when_the_service_stops(policy_config, policy_host_factory):
    from policy.runtime.service import PolicyService

    service = PolicyService(policy_config(CONFIG), policy_host_factory(plugins_for_tests), watch_interval=0)
    await service.start()
    handler = service.snapshot.handlers["allow"].handler
    await service.stop()
    assert handler.closed


async def test_report_only_rules_are_not_part_of_a_check(policy_config, policy_service_factory):
    extra = """
  - name: report-only
    match: request.id == "x"
    actions: [{handler: log, instances: [entry]}]
"""
    config = CONFIG.replace("instances:\n", "  - {name: log, adapter: stdio, params: {logStream: STDERR}}\ninstances:\n"
                            "  - {name: entry, template: logentry, params: {severity: '\"info\"'}}\n", 1)
    service = await policy_service_factory(policy_config(config + extra), plugins_for_tests)
    decision = await service.check({"request.path": "/", "request.id": "x"})
    assert "report-only" not in decision.rules
    assert ("request.id", None) not in {(r.name, r.map_key) for r in decision.referenced}
