"""Fixtures for the rbac tests: a real config (rbac handler, requestcontext instance, policies) and a service."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import pytest

HEAD = """
handlers:
  - name: authz
    adapter: rbac
    params: {params}
instances:
  - {{name: request, template: requestcontext, params: {{}}}}
rules:
  - name: authz
    actions: [{{handler: authz, instances: [request]}}]
"""


def config_text(policies: str, params: str = "{}") -> str:
    """The text of a config: the rbac handler with ``params``, then the policy documents."""
    return HEAD.format(params=params) + "---\n" + textwrap.dedent(policies)


def attrs(**given: Any) -> dict[str, Any]:
    """Request attributes, with ``destination.namespace`` ``foo`` unless given; IPs may be strings."""
    out: dict[str, Any] = {"destination.namespace": "foo"}
    for key, value in given.items():
        name = key.replace("__", ".")
        if name.endswith(".ip") and isinstance(value, str):
            value = ipaddress.ip_address(value)
        out[name] = value
    return {k: v for k, v in out.items() if v is not None}


@pytest.fixture
def decide(policy_config: Callable[..., Any], policy_service_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``await decide(policies_yaml, {attribute: value}, params="{}")`` → the service's Decision."""

    async def run(policies: str, attributes: Mapping[str, Any], params: str = "{}") -> Any:
        service = await policy_service_factory(policy_config(config_text(policies, params)))
        return await service.check(dict(attributes))

    return run


def reason(decision: Any) -> str:
    """The rbac handler's message for a decision (allowed or denied)."""
    (call,) = decision.calls
    return call.result.status.message
