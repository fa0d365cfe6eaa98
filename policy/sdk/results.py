"""What adapters answer: check results, quota arguments and quota results.

Cacheability is explicit. ``valid_duration=None`` means the adapter said nothing
about it, and such a result is never cached (Mixer silently cached those for a
minute); ``0`` means "do not cache"; a positive number of seconds allows caching
for that long. ``valid_use_count``: None means no use-count limit was given (the
duration alone bounds the entry); ``0`` means "do not reuse" (never cached).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policy.sdk.status import OK, Code, Status


class HeaderOperationKind(enum.Enum):
    """What a header operation does."""

    REPLACE = "REPLACE"
    APPEND = "APPEND"
    REMOVE = "REMOVE"


@dataclass(frozen=True, slots=True)
class HeaderOperation:
    """Set, append or remove one request or response header.

    :param name: the header name.
    :param value: the value (ignored by REMOVE).
    :param operation: REPLACE (the default), APPEND or REMOVE.
    """

    name: str
    value: str = ""
    operation: HeaderOperationKind = HeaderOperationKind.REPLACE


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check adapter's answer for one instance.

    :param status: OK to allow; any other code denies (PERMISSION_DENIED for a policy deny).
    :param valid_duration: seconds the result may be cached; None = not declared (never cached).
    :param valid_use_count: how many requests may reuse it; None = no count limit.
    :param request_headers: header operations to apply to the request when allowed.
    :param response_headers: header operations to apply to the response (or denied response).
    :param http_status: for a denial, an HTTP status to answer instead of the code's mapping.
    :param body: for a denial, a response body to answer instead of ``CODE:message``.
    :param metadata: extra values for the transport's dynamic metadata.
    :param query_parameters_to_set: (key, value) pairs to set on the allowed request's query
        (ext_authz's ``query_parameters_to_set``; transports without query rewriting ignore them).
    :param query_parameters_to_remove: query parameter names to remove from the allowed request.
    """

    status: Status = OK
    valid_duration: float | None = None
    valid_use_count: int | None = None
    request_headers: tuple[HeaderOperation, ...] = ()
    response_headers: tuple[HeaderOperation, ...] = ()
    http_status: int | None = None
    body: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    query_parameters_to_set: tuple[tuple[str, str], ...] = ()
    query_parameters_to_remove: tuple[str, ...] = ()

    @classmethod
    def allow(
        cls, valid_duration: float | None = None, valid_use_count: int | None = None, **kw: Any
    ) -> "CheckResult":
        """An OK result, cacheable for ``valid_duration`` seconds when given."""
        return cls(OK, valid_duration, valid_use_count, **kw)

    @classmethod
    def deny(
        cls,
        message: str,
        code: Code = Code.PERMISSION_DENIED,
        valid_duration: float | None = None,
        valid_use_count: int | None = None,
        **kw: Any,
    ) -> "CheckResult":
        """A denial with ``code`` (PERMISSION_DENIED by default) and a message."""
        return cls(Status(code, message), valid_duration, valid_use_count, **kw)


@dataclass(frozen=True, slots=True)
class QuotaArgs:
    """What is asked of a quota adapter on one call.

    :param quota: the quota (instance) name.
    :param amount: how much to allocate (negative releases, in allocation mode).
    :param best_effort: grant what is left instead of nothing when less than ``amount`` remains.
    :param deduplication_id: a retried call with the same id is not charged twice.
    """

    quota: str
    amount: int = 1
    best_effort: bool = False
    deduplication_id: str = ""


@dataclass(frozen=True, slots=True)
class QuotaResult:
    """A quota adapter's answer.

    :param granted_amount: how much was granted (0 when exhausted).
    :param valid_duration: seconds the grant is valid for (the window's remaining time).
    :param status: OK when granted; RESOURCE_EXHAUSTED when over the limit;
        UNAVAILABLE when the backend cannot be reached and the handler fails closed.
    :param remaining: what is left of the limit after this call, when the adapter knows
        (the rate-limit APIs report it); None otherwise.
    :param limit: the limit that applied, when the adapter knows; None otherwise.
    """

    granted_amount: int
    valid_duration: float = 0.0
    status: Status = OK
    remaining: int | None = None
    limit: int | None = None

    @property
    def ok(self) -> bool:
        """True when the status is OK."""
        return self.status.code == Code.OK
