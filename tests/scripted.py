"""Scripted adapters shared by the test packages (one plugin module, registered via extra_plugins).

They stand in for backends only where a test drives the host's own logic (combination,
caching, fail modes, queues, transports' translation) through answers a real adapter
cannot give on demand; adapter behaviour itself is tested with the real adapters.

Check adapters
    ``script`` / ``async-script``  answer as ``behaviour`` says: allow, deny, silent
        (declares no cacheability), raise, adapter-error (UNAVAILABLE); the async one
        first waits ``delay`` seconds.
    ``shaper``  answers exactly the status, HTTP status, body, headers and metadata its
        params give, so every response field of a transport can be driven.
Quota adapter
    ``counter``  at most ``limit`` units per dimension set.
Report adapters
    ``recorder``  keeps every instance; with ``hold`` each call waits for ``release()``.
    ``blocking``  a recorder that holds by default (a sync report stuck in its thread).
    ``hanging``   an async report that never returns (the pipeline's timeout cancels it).
    ``raising``   a report that always raises.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policy import (
    Adapter,
    AdapterError,
    AdapterRegistrar,
    BuildContext,
    CheckResult,
    Code,
    Handler,
    HeaderOperation,
    HeaderOperationKind,
    NoParams,
    QuotaArgs,
    QuotaResult,
    Status,
    hookimpl,
    param,
    parse_code,
)

#: The longest a held report waits for the test to release it (a bound, not a synchronisation).
HOLD_LIMIT = 60.0


# --- check: script ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptParams:
    behaviour: str = param("allow", doc="allow | deny | silent | raise | adapter-error")
    valid_duration: float = param(30.0, doc="seconds")
    valid_use_count: int = param(100, doc="uses")
    delay: float = param(0.0, doc="seconds an async check sleeps")


class ScriptHandler(Handler):
    """Answers as its params say, and keeps the instances it was asked about."""

    def __init__(self, params: ScriptParams) -> None:
        self.params = params
        self.calls: list[Any] = []
        self.closed = False

    def check(self, instance: Any) -> CheckResult:
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
    async def check(self, instance: Any) -> CheckResult:  # type: ignore[override]
        await asyncio.sleep(self.params.delay)
        return ScriptHandler.check(self, instance)


class Script(Adapter[ScriptParams]):
    name = "script"
    description = "Answers checks as scripted (tests only)."
    templates = ("checknothing", "listentry", "authorization", "requestcontext")
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


# --- check: shaper ----------------------------------------------------------------------


@dataclass(frozen=True)
class ShaperParams:
    code: str = param("OK", doc="status code name")
    message: str = param("", doc="status message")
    http_status: int | None = param(None, doc="HTTP status of a denial")
    body: str | None = param(None, doc="body of a denial")
    response_headers: dict[str, str] = param(default_factory=dict, doc="response headers to set")
    append_request_headers: dict[str, str] = param(default_factory=dict, doc="request headers to append")
    metadata: dict[str, str] = param(default_factory=dict, doc="dynamic metadata")
    valid_duration: float = param(30.0, doc="seconds")
    valid_use_count: int | None = param(None, doc="uses (none: no count limit)")


class ShaperHandler(Handler):
    """Answers exactly as its params say, and keeps the instances it was asked about."""

    def __init__(self, params: ShaperParams) -> None:
        self.params = params
        self.calls: list[Any] = []

    def check(self, instance: Any) -> CheckResult:
        self.calls.append(instance)
        p = self.params
        return CheckResult(
            status=Status(parse_code(p.code), p.message),
            valid_duration=p.valid_duration,
            valid_use_count=p.valid_use_count,
            http_status=p.http_status,
            body=p.body,
            request_headers=tuple(HeaderOperation(k, v, HeaderOperationKind.APPEND)
                                  for k, v in p.append_request_headers.items()),
            response_headers=tuple(HeaderOperation(k, v) for k, v in p.response_headers.items()),
            metadata=dict(p.metadata),
        )


class Shaper(Adapter[ShaperParams]):
    name = "shaper"
    description = "Answers checks exactly as configured (tests only)."
    templates = ("checknothing", "requestcontext")
    Params = ShaperParams

    @classmethod
    def build(cls, params: ShaperParams, context: BuildContext) -> Handler:
        return ShaperHandler(params)


# --- quota: counter ---------------------------------------------------------------------


@dataclass(frozen=True)
class CounterParams:
    limit: int = param(3, doc="max grants")


class CounterHandler(Handler):
    def __init__(self, params: CounterParams) -> None:
        self.limit = params.limit
        self.used: dict[tuple[Any, ...], int] = {}

    def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        key = tuple(sorted(instance.dimensions.items()))
        used = self.used.get(key, 0)
        if used + args.amount > self.limit:
            return QuotaResult(0, 1.0, Status(Code.RESOURCE_EXHAUSTED, "over limit"))
        self.used[key] = used + args.amount
        return QuotaResult(args.amount, 1.0)


class Counter(Adapter[CounterParams]):
    name = "counter"
    description = "A tiny quota counter (tests only)."
    templates = ("quota",)
    Params = CounterParams

    @classmethod
    def build(cls, params: CounterParams, context: BuildContext) -> Handler:
        return CounterHandler(params)


# --- report: recorder, blocking, hanging, raising ------------------------------------------

REPORT_TEMPLATES = ("logentry", "metric", "reportnothing")


@dataclass(frozen=True)
class RecorderParams:
    hold: bool = param(False, doc="wait for the test to release each report call")


class RecorderHandler(Handler):
    """Keeps every report instance; with ``hold`` each call waits (in its thread) until :meth:`release`."""

    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.instances: list[Any] = []
        self.lock = threading.Lock()

    @property
    def received(self) -> int:
        """How many instances it has taken."""
        return len(self.instances)

    def release(self) -> None:
        """Let held calls (and every later one) through."""
        self.gate.set()

    def report(self, instances: Sequence[Any]) -> None:
        self.entered.set()
        if self.hold and not self.gate.wait(HOLD_LIMIT):
            raise TimeoutError("the test never released the held report adapter")
        with self.lock:
            self.instances.extend(instances)

    async def close(self) -> None:
        self.release()


class Recorder(Adapter[RecorderParams]):
    name = "recorder"
    description = "Keeps report instances in memory (tests only)."
    templates = REPORT_TEMPLATES
    Params = RecorderParams

    @classmethod
    def build(cls, params: RecorderParams, context: BuildContext) -> Handler:
        return RecorderHandler(params.hold)


class Blocking(Adapter[NoParams]):
    name = "blocking"
    description = "A sync report held in its thread until the test releases it (tests only)."
    templates = REPORT_TEMPLATES

    @classmethod
    def build(cls, params: NoParams, context: BuildContext) -> Handler:
        return RecorderHandler(hold=True)


class HangingHandler(Handler):
    """An async report that never finishes on its own."""

    def __init__(self) -> None:
        self.calls = 0

    async def report(self, instances: Sequence[Any]) -> None:
        self.calls += 1
        await asyncio.Event().wait()


class Hanging(Adapter[NoParams]):
    name = "hanging"
    description = "An async report that never returns (tests only)."
    templates = REPORT_TEMPLATES

    @classmethod
    def build(cls, params: NoParams, context: BuildContext) -> Handler:
        return HangingHandler()


class RaisingHandler(Handler):
    """A report that always raises."""

    def __init__(self) -> None:
        self.calls = 0

    def report(self, instances: Sequence[Any]) -> None:
        self.calls += 1
        raise RuntimeError("the backend is on fire")


class Raising(Adapter[NoParams]):
    name = "raising"
    description = "A report that always raises (tests only)."
    templates = REPORT_TEMPLATES

    @classmethod
    def build(cls, params: NoParams, context: BuildContext) -> Handler:
        return RaisingHandler()


ADAPTERS: tuple[type[Adapter[Any]], ...] = (Script, AsyncScript, Shaper, Counter, Recorder, Blocking, Hanging, Raising)


def register_all(registry: AdapterRegistrar) -> None:
    """Register every scripted adapter."""
    for adapter in ADAPTERS:
        registry.add(adapter)


@hookimpl
def policy_register_adapters(registry: AdapterRegistrar) -> None:
    """Register every scripted adapter (this module is the plugin)."""
    register_all(registry)
