"""A scripted CUSTOM provider for the rbac delegation tests (a plugin module, registered via extra_plugins).

It stands in for an external authorizer only to drive the delegation logic through
failures that a real engine cannot produce on demand (raising, hanging); the
happy path is also tested with a real opa handler as the provider.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from policy import (
    Adapter,
    AdapterError,
    BuildContext,
    CheckResult,
    Code,
    Handler,
    HeaderOperation,
    Status,
    hookimpl,
    param,
)


@dataclass(frozen=True)
class ProviderParams:
    behaviour: str = param("allow", doc="allow | deny | raise | unavailable | slow")
    delay: float = param(0.0, doc="seconds a slow answer takes")


class ScriptedProvider(Handler):
    """Answers as scripted and remembers the instances it was asked about."""

    def __init__(self, params: ProviderParams) -> None:
        self.params = params
        self.calls: list[Any] = []

    async def check(self, instance: Any) -> CheckResult:
        self.calls.append(instance)
        behaviour = self.params.behaviour
        if behaviour == "slow":
            await asyncio.sleep(self.params.delay)
            behaviour = "allow"
        if behaviour == "allow":
            return CheckResult(Status(Code.OK, "provider ok"), 20.0, 50,
                               request_headers=(HeaderOperation("x-ext-authz", "checked"),),
                               metadata={"provider": "scripted"})
        if behaviour == "deny":
            return CheckResult.deny("not on the guest list", valid_duration=5.0, http_status=401, body="go away")
        if behaviour == "unavailable":
            raise AdapterError(Code.UNAVAILABLE, "authorizer is down")
        raise RuntimeError("provider crashed")


class ScriptedProviderAdapter(Adapter):
    name = "scripted-provider"
    description = "A scripted external authorizer for tests."
    templates = ("requestcontext",)
    Params = ProviderParams

    @classmethod
    def build(cls, params: ProviderParams, context: BuildContext) -> Handler:
        return ScriptedProvider(params)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    registry.add(ScriptedProviderAdapter)
