"""Adapters the Envoy API tests configure (a plugin module, registered via extra_plugins).

``recorder`` keeps the report instances it is given (and can be held back to play a
slow backend); ``shaper`` answers checks with exactly the status, HTTP status, body,
headers and metadata its params say, so every response field can be driven.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policy import (
    Adapter,
    BuildContext,
    CheckResult,
    Handler,
    HeaderOperation,
    HeaderOperationKind,
    Status,
    hookimpl,
    param,
    parse_code,
)


@dataclass(frozen=True)
class RecorderParams:
    hold: bool = param(False, doc="wait for the test to release each report call")


class RecorderHandler(Handler):
    """Keeps every report instance; with ``hold`` each call waits until ``release`` is called."""

    def __init__(self, params: RecorderParams) -> None:
        self.hold = params.hold
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.instances: list[Any] = []
        self.lock = threading.Lock()

    def release(self) -> None:
        self.gate.set()

    def report(self, instances: Sequence[Any]) -> None:
        self.entered.set()
        if self.hold:
            self.gate.wait(30)
        with self.lock:
            self.instances.extend(instances)


class Recorder(Adapter):
    name = "recorder"
    description = "Keeps report instances in memory (tests only)."
    templates = ("logentry", "metric", "reportnothing")
    Params = RecorderParams

    @classmethod
    def build(cls, params: RecorderParams, context: BuildContext) -> Handler:
        return RecorderHandler(params)


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


class ShaperHandler(Handler):
    def __init__(self, params: ShaperParams) -> None:
        self.params = params
        self.calls = 0

    def check(self, instance: Any) -> CheckResult:
        self.calls += 1
        p = self.params
        return CheckResult(
            status=Status(parse_code(p.code), p.message),
            valid_duration=p.valid_duration,
            http_status=p.http_status,
            body=p.body,
            request_headers=tuple(HeaderOperation(k, v, HeaderOperationKind.APPEND)
                                  for k, v in p.append_request_headers.items()),
            response_headers=tuple(HeaderOperation(k, v) for k, v in p.response_headers.items()),
            metadata=dict(p.metadata),
        )


class Shaper(Adapter):
    name = "shaper"
    description = "Answers checks exactly as configured (tests only)."
    templates = ("checknothing",)
    Params = ShaperParams

    @classmethod
    def build(cls, params: ShaperParams, context: BuildContext) -> Handler:
        return ShaperHandler(params)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    registry.add(Recorder)
    registry.add(Shaper)
