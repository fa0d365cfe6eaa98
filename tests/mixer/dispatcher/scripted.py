"""A test-only adapter answering what its params script, like the fake adapters of Mixer's dispatcher tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from policy import (
    Adapter,
    BuildContext,
    CheckResult,
    Handler,
    HeaderOperation,
    HeaderOperationKind,
    QuotaArgs,
    QuotaResult,
    Status,
    hookimpl,
    param,
    parse_code,
)


@dataclass(frozen=True)
class ScriptedCheck:
    """One scripted check answer."""

    code: str = param("OK", doc="google.rpc code")
    message: str = param("", doc="status message")
    valid_duration: dt.timedelta = param(dt.timedelta(seconds=123), doc="cacheable for")
    valid_use_count: int = param(123, doc="reusable for")
    http_status: int = param(0, doc="direct response code (0: none)")
    body: str = param("", doc="direct response body")
    response_headers: dict[str, str] = param(default_factory=dict, doc="direct response headers")


@dataclass(frozen=True)
class ScriptedQuota:
    """One scripted quota answer."""

    granted: int = param(0, doc="amount granted")
    valid_duration: dt.timedelta = param(dt.timedelta(0), doc="valid for")
    code: str = param("OK", doc="google.rpc code")
    message: str = param("", doc="status message")


@dataclass(frozen=True)
class ScriptedParams:
    """Answers in call order (the last one repeats); ``fail`` makes every call raise."""

    checks: list[ScriptedCheck] = param(default_factory=list, doc="check answers")
    quotas: list[ScriptedQuota] = param(default_factory=list, doc="quota answers")
    fail: str = param("", doc="raise RuntimeError(fail) on every call")


class ScriptedHandler(Handler):
    """Hands out the scripted answers in order."""

    def __init__(self, params: ScriptedParams) -> None:
        self.params = params
        self.check_calls = 0
        self.quota_calls = 0

    def check(self, instance: Any) -> CheckResult:
        """The next scripted check answer."""
        if self.params.fail:
            raise RuntimeError(self.params.fail)
        script = self.params.checks or [ScriptedCheck()]
        answer = script[min(self.check_calls, len(script) - 1)]
        self.check_calls += 1
        headers = tuple(HeaderOperation(k, v, HeaderOperationKind.REPLACE) for k, v in answer.response_headers.items())
        return CheckResult(Status(parse_code(answer.code), answer.message),
                           valid_duration=answer.valid_duration.total_seconds(),
                           valid_use_count=answer.valid_use_count, response_headers=headers,
                           http_status=answer.http_status or None, body=answer.body or None)

    def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        """The next scripted quota answer."""
        if self.params.fail:
            raise RuntimeError(self.params.fail)
        script = self.params.quotas or [ScriptedQuota(granted=args.amount)]
        answer = script[min(self.quota_calls, len(script) - 1)]
        self.quota_calls += 1
        return QuotaResult(answer.granted, answer.valid_duration.total_seconds(),
                           Status(parse_code(answer.code), answer.message))


class Scripted(Adapter):
    """Scripted answers for dispatcher tests."""

    name = "scripted"
    description = "Answers what its params script (tests only)"
    templates = ("checknothing", "quota")
    Params = ScriptedParams

    @classmethod
    def build(cls, params: ScriptedParams, context: BuildContext) -> ScriptedHandler:
        """A handler answering the script."""
        return ScriptedHandler(params)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the scripted adapter."""
    registry.add(Scripted)
