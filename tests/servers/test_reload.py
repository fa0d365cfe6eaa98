"""Hot reload: a changed config swaps in atomically; a bad one is rejected and the last good keeps serving."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import textwrap

from policy.testing import native_check

ALLOW_10 = """
handlers:
  - {name: nets, adapter: listchecker, params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"], cachingInterval: 60s}}
instances:
  - {name: ip, template: listentry, params: {value: source.ip}}
rules:
  - {name: nets, actions: [{handler: nets, instances: [ip]}]}
"""


async def _wait_for(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def _code(server, ip):
    response = await native_check(server.native(), {"source.ip": ipaddress.ip_address(ip)})
    return response.precondition.status.code


async def test_a_changed_config_is_swapped_in(policy_config, policy_server_factory):
    config = policy_config(ALLOW_10)
    server = await policy_server_factory(config, watch_interval=0.05)
    assert await _code(server, "192.168.1.1") == 7
    (config / "policy.yaml").write_text(textwrap.dedent(ALLOW_10.replace('["10.0.0.0/8"]', '["192.168.0.0/16"]')))
    assert await _wait_for(lambda: server.service.reload_status.generation == 2)
    assert await _code(server, "192.168.1.1") == 0
    assert await _code(server, "10.1.1.1") == 7


async def test_a_bad_config_is_rejected_and_the_last_good_keeps_serving(policy_config, policy_server_factory, caplog):
    config = policy_config(ALLOW_10)
    server = await policy_server_factory(config, watch_interval=0.05)
    (config / "policy.yaml").write_text("handlers:\n  - {name: nets, adapter: nosuch}\n")
    assert await _wait_for(lambda: not server.service.reload_status.ok)
    status = server.service.reload_status
    assert status.generation == 1 and status.failures == 1
    assert any("nosuch" in e for e in status.errors)
    assert any("rejected" in r.getMessage() for r in caplog.records)
    assert await _code(server, "10.1.1.1") == 0
    assert await _code(server, "192.168.1.1") == 7
    # Fixing it is picked up again.
    (config / "policy.yaml").write_text(textwrap.dedent(ALLOW_10.replace("10.0.0.0/8", "172.16.0.0/12")))
    assert await _wait_for(lambda: server.service.reload_status.ok and server.service.reload_status.generation == 2)
    assert await _code(server, "172.16.5.5") == 0


async def test_a_configmap_symlink_swap_is_picked_up(tmp_path, policy_server_factory):
    """Kubernetes mounts a ConfigMap as ..data -> ..<timestamp>/ and swaps ..data atomically."""
    mount = tmp_path / "mount"
    first = mount / "..2026_11_25_01"
    first.mkdir(parents=True)
    (first / "policy.yaml").write_text(textwrap.dedent(ALLOW_10))
    os.symlink(first.name, mount / "..data")
    os.symlink("..data/policy.yaml", mount / "policy.yaml")
    server = await policy_server_factory(mount, watch_interval=0.05)
    assert await _code(server, "10.1.1.1") == 0

    second = mount / "..2026_11_25_02"
    second.mkdir()
    (second / "policy.yaml").write_text(textwrap.dedent(ALLOW_10.replace("10.0.0.0/8", "192.168.0.0/16")))
    tmp_link = mount / "..data_tmp"
    os.symlink(second.name, tmp_link)
    os.replace(tmp_link, mount / "..data")
    assert await _wait_for(lambda: server.service.reload_status.generation == 2)
    assert await _code(server, "10.1.1.1") == 7
    assert await _code(server, "192.168.9.9") == 0


async def test_retired_handlers_are_closed_after_the_swap(policy_config, policy_server_factory):
    config = policy_config(ALLOW_10)
    server = await policy_server_factory(config, watch_interval=0.05)
    server.service.retire_grace = 0.05
    old = server.service.snapshot
    (config / "policy.yaml").write_text(textwrap.dedent(ALLOW_10.replace("10.0.0.0/8", "11.0.0.0/8")))
    assert await _wait_for(lambda: server.service.reload_status.generation == 2)
    assert server.service.snapshot is not old
    closed = []
    for entry in old.handlers.values():
        original = entry.handler.close

        async def record(original=original):
            closed.append(True)
            await original()

        entry.handler.close = record
    assert await _wait_for(lambda: closed)
