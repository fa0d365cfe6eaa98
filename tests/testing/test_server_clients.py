"""RunningServer's clients: native and ext_authz stubs on TCP and the Unix socket; the fixtures' options."""

from __future__ import annotations

import ipaddress

import grpc
import pytest

from policy.servers.app import API_MODULES
from policy.testing import ext_authz_request, native_check

CONFIG = """
handlers:
  - name: internal
    adapter: listchecker
    params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"]}
instances:
  - {name: source-ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
rules:
  - {name: internal-only, actions: [{handler: internal, instances: [source-ip]}]}
"""


@pytest.mark.parametrize("via", ["tcp", "unix"])
async def test_ext_authz_stub_reaches_the_server(policy_config, policy_server_factory, via):
    server = await policy_server_factory(policy_config(CONFIG))
    stub = server.ext_authz(server.tcp if via == "tcp" else server.unix)
    inside = ext_authz_request(path="/books", source_ip="10.1.2.3", headers={"X-User": "ann"})
    assert inside.attributes.request.http.headers["x-user"] == "ann"
    if "policy.servers.ext_authz" not in API_MODULES:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Check(inside)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        return
    allowed = await stub.Check(inside)
    assert allowed.status.code == 0
    denied = await stub.Check(ext_authz_request(source_ip="192.168.9.9"))
    assert denied.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert "192.168.9.9 is not whitelisted" in denied.status.message
    assert denied.denied_response.status.code == 403


async def test_native_stub_on_both_addresses_shares_one_service(policy_config, policy_server_factory):
    server = await policy_server_factory(policy_config(CONFIG))
    assert server.tcp.startswith("127.0.0.1:") and server.unix.startswith("unix:")
    for address in (server.tcp, server.unix):
        response = await native_check(server.native(address), {"source.ip": ipaddress.ip_address("10.0.0.1")})
        assert response.precondition.status.code == 0
    assert server.service.dispatcher.cache.stats.hits == 1  # the second address hit the first's entry


async def test_server_without_unix_socket(policy_config, policy_server_factory):
    server = await policy_server_factory(policy_config(CONFIG), unix=False)
    assert server.unix is None
    assert server.server.addresses == [server.tcp]


async def test_policy_recorder_fixtures(policy_config, policy_service_factory, policy_hook_recorder,
                                        policy_call_recorder):
    service = await policy_service_factory(policy_config(CONFIG), policy_hook_recorder, policy_call_recorder)
    decision = await service.check({"source.ip": ipaddress.ip_address("10.9.9.9")})
    assert decision.allowed
    assert "policy_startup" in policy_hook_recorder.names()
    (call,) = policy_call_recorder.of("internal", "check")
    assert str(call.instance.value) == "10.9.9.9"


def test_host_factory_autoload_loads_entry_points(policy_host_factory, monkeypatch):
    # Autoload reads the policy.adapters entry points; the built-ins are listed there too,
    # and they are registered once either way.
    with_autoload = policy_host_factory(autoload=True)
    without = policy_host_factory()
    assert {r.name for r in without.adapters} <= {r.name for r in with_autoload.adapters}
    assert with_autoload.origin_of("denier").distribution == "sidecar-policy"
