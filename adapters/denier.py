"""The ``denier`` adapter: answer every check with one configured status.

What it does
    Every ``check`` (templates ``checknothing``, ``listentry`` and ``authorization``)
    answers the configured ``status`` without looking at the instance. Every ``quota``
    call (template ``quota``) is granted nothing, as Mixer's denier did (its status
    is ``RESOURCE_EXHAUSTED``, valid duration 0, whatever ``status`` says). Use it in
    a rule whose match selects the requests to reject.

Params (defaults are Mixer's, from ``mixer/adapter/metadata``'s denier entry)
    ``status.code``    google.rpc code name or number; default ``FAILED_PRECONDITION``.
    ``status.message`` message of the denial; default empty (the host adds the handler's name).
    ``validDuration``  how long the answer may be cached; default ``5s``.
    ``validUseCount``  how many requests may reuse a cached answer; default ``1000``.

Fail mode
    None needed: the handler does no I/O and cannot fail at request time.

Cacheability
    Always declared: ``validDuration`` / ``validUseCount`` (``0s`` means "do not cache").

Limits
    Mixer answered a quota call with status OK and amount 0 (its client denied the
    request for the missing amount); this one says RESOURCE_EXHAUSTED outright, as
    the quota adapters here do. A ``status.code`` of ``OK`` is accepted and makes the handler allow everything,
    as in Mixer. ``google.rpc.Status.details`` is not supported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from policy import (
    Adapter,
    BuildContext,
    CheckResult,
    FieldError,
    Code,
    Handler,
    QuotaArgs,
    QuotaResult,
    Status,
    hookimpl,
    param,
    parse_code,
)


_NOTHING = QuotaResult(0, 0.0, Status(Code.RESOURCE_EXHAUSTED, "the denier grants no quota"))


@dataclass(frozen=True)
class DenierStatus:
    """The status a denier answers (Mixer's ``google.rpc.Status``: code and message)."""

    code: str = param("FAILED_PRECONDITION", doc="google.rpc code, by name (PERMISSION_DENIED) or number (7).")
    message: str = param("", doc="Message of the denial.")


@dataclass(frozen=True)
class DenierParams:
    """Params of the ``denier`` adapter."""

    status: DenierStatus = param(default_factory=DenierStatus, doc="The status every check answers.")
    valid_duration: dt.timedelta = param(
        dt.timedelta(seconds=5), doc="How long the answer may be cached (0s: never).")
    valid_use_count: int = param(1000, doc="How many requests may reuse a cached answer.")


class DenierHandler(Handler):
    """Answers every check with the same prebuilt result."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result

    def check(self, instance: Any) -> CheckResult:
        """Answer the configured status, whatever the instance."""
        return self.result

    def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        """Grant nothing (Mixer's denier: amount 0, valid duration 0)."""
        return _NOTHING


class Denier(Adapter[DenierParams]):
    """Rejects every check with a configurable status (Mixer's ``denier``)."""

    name = "denier"
    description = "Rejects any check with a configurable status"
    templates = ("checknothing", "listentry", "authorization", "quota")
    Params = DenierParams

    @classmethod
    def validate(cls, params: DenierParams) -> Iterator[FieldError]:
        """Check the status code and the non-negative cache bounds."""
        try:
            parse_code(params.status.code)
        except ValueError as exc:
            yield FieldError("status.code", str(exc))
        if params.valid_use_count < 0:
            yield FieldError("validUseCount", f"must be >= 0, got {params.valid_use_count}")

    @classmethod
    def build(cls, params: DenierParams, context: BuildContext) -> DenierHandler:
        """Build a handler answering the configured status."""
        status = Status(parse_code(params.status.code), params.status.message)
        result = CheckResult(
            status,
            valid_duration=params.valid_duration.total_seconds(),
            valid_use_count=params.valid_use_count,
        )
        return DenierHandler(result)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``denier`` adapter."""
    registry.add(Denier)


__all__ = ["Denier", "DenierHandler", "DenierParams", "DenierStatus", "policy_register_adapters"]
