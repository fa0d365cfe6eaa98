"""Scenario tables against a service in-process and a real server over TCP and its Unix socket."""

from __future__ import annotations

import ipaddress

import pytest

from policy import Code
from policy.testing import Scenario, assert_scenarios, run_scenarios

CONFIG = """
handlers:
  - name: internal
    adapter: listchecker
    params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"], cachingInterval: 30s}
  - name: blocked
    adapter: denier
    params: {status: {code: PERMISSION_DENIED, message: mallory is blocked}}
instances:
  - {name: source-ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
  - {name: nothing, template: checknothing, params: {}}
rules:
  - name: internal-only
    actions: [{handler: internal, instances: [source-ip]}]
  - name: block-mallory
    match: request.headers["x-user"] == "mallory"
    actions: [{handler: blocked, instances: [nothing]}]
"""

INSIDE = {"source.ip": ipaddress.ip_address("10.1.2.3")}
OUTSIDE = {"source.ip": ipaddress.ip_address("192.168.1.1")}
MALLORY = {**INSIDE, "request.headers": {"x-user": "mallory"}}

TABLE = [
    (INSIDE, "OK"),
    (OUTSIDE, "PERMISSION_DENIED", "not whitelisted"),
    Scenario(MALLORY, Code.PERMISSION_DENIED, message="blocked: mallory is blocked", name="mallory"),
    (INSIDE, 0),
]


async def test_table_passes_in_process(policy_config, policy_service_factory):
    service = await policy_service_factory(policy_config(CONFIG))
    results = await assert_scenarios(service, TABLE)
    assert [outcome.code for _, outcome in results] == [Code.OK, Code.PERMISSION_DENIED,
                                                        Code.PERMISSION_DENIED, Code.OK]


@pytest.mark.parametrize("via", ["tcp", "unix"])
async def test_table_passes_over_the_native_api(policy_config, policy_server_factory, via):
    server = await policy_server_factory(policy_config(CONFIG))
    results = await assert_scenarios(server, TABLE, via=via)
    assert "mallory is blocked" in results[2][1].message
    # The calls really went over the wire: the server's cache saw them.
    assert server.service.dispatcher.cache.stats.misses >= 2


async def test_failure_lists_every_mismatch_readably(policy_config, policy_service_factory):
    service = await policy_service_factory(policy_config(CONFIG))
    wrong = [
        (INSIDE, "OK"),
        Scenario(OUTSIDE, "OK", name="outsider"),
        (MALLORY, "PERMISSION_DENIED", "some other reason"),
    ]
    with pytest.raises(AssertionError) as info:
        await assert_scenarios(service, wrong)
    text = str(info.value)
    assert text.startswith("2 of 3 scenario(s) answered otherwise:")
    assert "outsider: attributes {'source.ip': IPv4Address('192.168.1.1')}" in text
    assert "expected OK\n" in text and "got      PERMISSION_DENIED 'internal: 192.168.1.1 is not whitelisted'" in text
    assert "#2:" in text and "with message containing 'some other reason'" in text
    assert "#0" not in text


async def test_quotas_in_scenarios(policy_config, policy_server_factory):
    from tests.runtime import plugins_for_tests

    config = policy_config("""
    handlers: [{name: counter, adapter: counter, params: {limit: 2}}]
    instances: [{name: requests, template: quota, params: {dimensions: {user: 'request.headers["x-user"] | "anon"'}}}]
    rules: [{name: limit, actions: [{handler: counter, instances: [requests]}]}]
    """)
    server = await policy_server_factory(config, plugins_for_tests)
    ann = {"request.headers": {"x-user": "ann"}}
    await assert_scenarios(server, [
        Scenario(ann, "OK", quotas={"requests": 2}),
        Scenario(ann, "RESOURCE_EXHAUSTED", message="over limit", quotas={"requests": 1}),
        Scenario({"request.headers": {"x-user": "bob"}}, "OK", quotas={"requests": 1}),
    ])


async def test_bad_rows_and_targets_are_rejected(policy_config, policy_service_factory):
    service = await policy_service_factory(policy_config(CONFIG))
    with pytest.raises(TypeError, match="a scenario is a Scenario"):
        await run_scenarios(service, [("source.ip", "OK")])
    with pytest.raises(TypeError, match="takes a PolicyService or a RunningServer"):
        await run_scenarios(object(), [(INSIDE, "OK")])
    with pytest.raises(ValueError, match="not a status code"):
        await assert_scenarios(service, [(INSIDE, "ALLOWED")])
