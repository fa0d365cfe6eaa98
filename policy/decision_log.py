"""Decision logs: every check decision as a structured log line and, when enabled, as a report.

**Log lines.** Each decision is logged on the ``policy.decisions`` logger: denials
and errors at INFO, allowed decisions at DEBUG (``--log-level debug`` shows every
one). The record carries ``decision_id``, ``api``, ``code``, ``reason``, ``rules``,
``cache_hit``, ``duration_ms`` and ``generation`` as fields, which the JSON log
format (:mod:`policy.logs`) puts at the top level of the line. ``decision_id`` is
the id the native API returns and the Envoy ext_authz API puts in dynamic
metadata, so a log line joins with Envoy's access log.

**Reports.** With decision logging on (``policy serve --decision-log``,
``PolicyService(decision_log=DecisionLog())``) every decision is also sent
through the report rules as one attribute set: the request's attributes, with
sensitive values masked, plus

==========================  =======  ==============================================
``check.error_code``        INT64    the decision's gRPC code (0 when allowed)
``check.error_message``     STRING   why it was denied (absent when allowed)
``check.cache_hit``         BOOL     answered from the decision cache
``check.rules``             STRING   the matched rules, comma-separated
``check.decision_id``       STRING   the decision id
``context.reporter.kind``   STRING   ``"decision"``
==========================  =======  ==============================================

Report rules pick decision records with ``match: context.reporter.kind == "decision"``
(Envoy's own reports say ``inbound`` or ``outbound``) and build ``logentry`` or
``metric`` instances from them like from any report; a report rule without a match
receives them too. The records go through the same bounded per-handler queues as
other reports, so a slow log backend never slows a check.

**Masking.** Values of the headers in :data:`DEFAULT_MASKED_HEADERS` (in
``request.headers`` and ``response.headers``, compared case-insensitively) and of
the attributes in :data:`DEFAULT_MASKED_ATTRIBUTES` are replaced by
:data:`MASK` before any rule sees them. The lists are replaceable per service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from policy.attributes import AttributeBag

if TYPE_CHECKING:
    from policy.runtime.decision import Decision

#: What a masked value is replaced with.
MASK = "[masked]"

#: Headers whose values are credentials or session state.
DEFAULT_MASKED_HEADERS: frozenset[str] = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "x-auth-token", "x-access-token", "x-csrf-token", "x-xsrf-token", "x-amz-security-token",
    "x-goog-iap-jwt-assertion", "x-forwarded-client-cert",
})

#: Attributes whose whole value is a credential.
DEFAULT_MASKED_ATTRIBUTES: frozenset[str] = frozenset({"request.api_key", "request.auth.raw_claims"})

_HEADER_MAPS = ("request.headers", "response.headers")

_log = logging.getLogger("policy.decisions")
_DEBUG, _INFO = logging.DEBUG, logging.INFO


def log_decision(decision: Decision, api: str, seconds: float, code: str | None = None) -> None:
    """Log one decision on ``policy.decisions`` (INFO when not allowed, DEBUG when allowed)."""
    code = code or decision.code.name
    level = _DEBUG if code == "OK" else _INFO
    if not _log.isEnabledFor(level):
        return
    reason = decision.message
    _log.log(level, "decision %s: %s%s (api %s, rules %s)", decision.decision_id, code,
             f" — {reason}" if reason else "", api, ",".join(decision.rules) or "none",
             extra={"decision_id": decision.decision_id, "api": api, "code": code, "reason": reason,
                    "rules": list(decision.rules), "cache_hit": decision.cache_hit,
                    "duration_ms": round(seconds * 1000, 3), "generation": decision.generation})


class DecisionLog:
    """Sends each decision through the report rules as a masked attribute set.

    :param masked_headers: header names (any case) whose values are masked.
    :param masked_attributes: attribute names whose values are masked.
    """

    def __init__(
        self,
        masked_headers: Iterable[str] = DEFAULT_MASKED_HEADERS,
        masked_attributes: Iterable[str] = DEFAULT_MASKED_ATTRIBUTES,
    ) -> None:
        self.masked_headers = frozenset(h.lower() for h in masked_headers)
        self.masked_attributes = frozenset(masked_attributes)

    def record(self, decision: Decision, request: AttributeBag | dict[str, Any]) -> AttributeBag:
        """The attribute set a decision is reported as: masked request attributes plus ``check.*``."""
        raw = request.raw if isinstance(request, AttributeBag) else request
        values = dict(raw)
        if not self.masked_attributes.isdisjoint(values):
            for name in self.masked_attributes.intersection(values):
                values[name] = MASK
        if self.masked_headers:
            for name in _HEADER_MAPS:
                headers = values.get(name)
                if headers:
                    values[name] = self.mask_headers(headers)
        status = decision.status
        if status.code or decision.quotas:
            values["check.error_code"] = int(decision.code)
            message = decision.message
        else:
            values["check.error_code"] = 0
            message = ""
        if message:
            values["check.error_message"] = message
        else:
            values.pop("check.error_message", None)
        values["check.cache_hit"] = decision.cache_hit
        values["check.rules"] = ",".join(decision.rules)
        values["check.decision_id"] = decision.decision_id
        values["context.reporter.kind"] = "decision"
        return AttributeBag.trusted(values)

    def mask_headers(self, headers: Any) -> Any:
        """``headers`` with the values of masked headers replaced (the same object when none is present)."""
        masked = self.masked_headers
        if masked.isdisjoint(map(str.lower, headers)):
            return headers
        return {key: MASK if key.lower() in masked else value for key, value in headers.items()}

    def send(self, decision: Decision, request: AttributeBag, dispatcher: Any) -> int:
        """Report ``decision`` through ``dispatcher``'s report rules; returns the instances queued."""
        return dispatcher.report((self.record(decision, request),))


__all__ = [
    "DEFAULT_MASKED_ATTRIBUTES",
    "DEFAULT_MASKED_HEADERS",
    "MASK",
    "DecisionLog",
    "log_decision",
]
