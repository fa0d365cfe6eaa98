"""Tests of the my-adapter adapter, with sidecar-policy's test kit (policy.testing)."""

from __future__ import annotations

from pathlib import Path

import policy_adapter_my_adapter as plugin
from policy_adapter_my_adapter import MyAdapterAdapter
from policy import Code
from policy.testing import Scenario, assert_scenarios, check_adapter_conformance

EXAMPLE = (Path(__file__).resolve().parents[1] / "example" / "policy.yaml").read_text()


async def test_conformance():
    """The adapter honours the contract: documented params, field-scoped errors, cacheable results..."""
    await check_adapter_conformance(
        MyAdapterAdapter,
        valid_params=[{}, {"allowedUsers": ["alice"], "validDuration": "10s"}],
        invalid_params=[{"allowedUsers": "alice"}, {"allowedUsers": [" "]}, {"validDuration": "soon"}],
        plugins=[plugin],
    )


async def test_example_config_through_a_real_server(policy_config, policy_server_factory):
    """The example config, served on a real socket, decides as documented."""
    server = await policy_server_factory(policy_config(EXAMPLE), plugin)
    await assert_scenarios(server, [
        ({"request.headers": {"x-user": "alice"}}, "OK"),
        ({"request.headers": {"x-user": "mallory"}}, "PERMISSION_DENIED", "user 'mallory' is not allowed"),
        Scenario({}, Code.UNAUTHENTICATED, message="no user", name="anonymous"),
    ])
    await assert_scenarios(server, [({"request.headers": {"x-user": "bob"}}, "OK")], via="unix")


async def test_answers_are_cached(policy_config, policy_service_factory, policy_call_recorder):
    """A repeated request is answered from the decision cache: the handler is called once."""
    service = await policy_service_factory(policy_config(EXAMPLE), plugin, policy_call_recorder)
    for request_id in ("a", "b", "c"):
        decision = await service.check({"request.headers": {"x-user": "alice"}, "request.id": request_id})
        assert decision.allowed and decision.valid_duration == 30
    (call,) = policy_call_recorder.of("users", "check")
    assert call.instance.subject.user == "alice"


def test_installed_adapter_is_found_by_its_entry_point(policy_host_factory):
    """After ``pip install``, the host loads the adapter from its entry point."""
    registered = policy_host_factory(autoload=True).adapters.get("my-adapter")
    assert registered is not None, "pip install -e . first"
    assert registered.origin.distribution == "policy-adapter-my-adapter"
