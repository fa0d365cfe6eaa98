"""Small adapters used by the runtime tests (a plugin module, registered via extra_plugins)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from policy import (
    Adapter,
    AdapterError,
    BuildContext,
    CheckResult,
    Code,
    Handler,
    QuotaArgs,
    QuotaResult,
    Status,
    hookimpl,
    param,
)


@dataclass(frozen=True)
class ScriptParams:
    behaviour: str = param("allow", doc="allow | deny | silent | raise | adapter-error | slow")
    valid_duration: float = param(30.0, doc="seconds")
    valid_use_count: int = param(100, doc="uses")
    delay: float = param(0.0, doc="seconds an async check sleeps")


class ScriptHandler(Handler):
    """Answers as its params say, and counts calls."""

    def __init__(self, params: ScriptParams) -> None:
        self.params = params
        self.calls: list = []
        self.closed = False

    def check(self, instance):
        self.calls.append(instance)
        p = self.params
        if p.behaviour == "allow":
            return CheckResult.allow(p.valid_duration, p.valid_use_count)
        if p.behaviour == "deny":
            return CheckResult.deny("scripted denial", valid_duration=p.valid_duration,
                                    valid_use_count=p.valid_use_count)
        if p.behaviour == "silent":
            return CheckResult.allow()
        if p.behaviour == "adapter-error":
            raise AdapterError(Code.UNAVAILABLE, "backend down")
        raise RuntimeError("boom")

    async def close(self) -> None:
        self.closed = True


class AsyncScriptHandler(ScriptHandler):
    async def check(self, instance):  # type: ignore[override]
        await asyncio.sleep(self.params.delay)
        return ScriptHandler.check(self, instance)


class Script(Adapter):
    name = "script"
    description = "Answers checks as scripted (tests only)."
    templates = ("checknothing", "listentry", "authorization")
    Params = ScriptParams

    @classmethod
    def build(cls, params: ScriptParams, context: BuildContext) -> Handler:
        return ScriptHandler(params)


class AsyncScript(Script):
    name = "async-script"
    description = "Answers checks as scripted, asynchronously (tests only)."

    @classmethod
    def build(cls, params: ScriptParams, context: BuildContext) -> Handler:
        return AsyncScriptHandler(params)


@dataclass(frozen=True)
class CounterParams:
    limit: int = param(3, doc="max grants")


class CounterHandler(Handler):
    def __init__(self, params: CounterParams) -> None:
        self.limit = params.limit
        self.used: dict = {}

    def quota(self, instance, args: QuotaArgs) -> QuotaResult:
        key = tuple(sorted(instance.dimensions.items()))
        used = self.used.get(key, 0)
        if used + args.amount > self.limit:
            return QuotaResult(0, 1.0, Status(Code.RESOURCE_EXHAUSTED, "over limit"))
        self.used[key] = used + args.amount
        return QuotaResult(args.amount, 1.0)


class Counter(Adapter):
    name = "counter"
    description = "A tiny quota counter (tests only)."
    templates = ("quota",)
    Params = CounterParams

    @classmethod
    def build(cls, params: CounterParams, context: BuildContext) -> Handler:
        return CounterHandler(params)


@hookimpl
def policy_register_adapters(registry):
    registry.add(Script)
    registry.add(AsyncScript)
    registry.add(Counter)
