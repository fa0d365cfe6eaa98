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
through the report rules as one attribute set: the request's attributes that
the report rules can read (``Snapshot.report_reads``: their matches and instances;
every attribute when one cannot say), with sensitive values masked, plus

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
other reports, so a slow log backend never slows a check. A check only copies those
attributes (shallowly); the masking, the record and its instances are built a few
milliseconds later together with other checks' records (``ReportQueue.defer``), and
before any drain or shutdown.

**Masking.** Before any rule sees them, :data:`MASK` replaces the values of

* the headers in :data:`DEFAULT_MASKED_HEADERS` (in ``request.headers`` and
  ``response.headers``, compared case-insensitively);
* the query parameters in :data:`DEFAULT_MASKED_QUERY_PARAMS` (compared
  case-insensitively), wherever a query appears: ``request.query_params``,
  the query part of ``request.path`` and of the ``:path``,
  ``x-envoy-original-path`` and ``referer`` headers;
* the attributes in :data:`DEFAULT_MASKED_ATTRIBUTES` (a map attribute, like the
  JWT's ``request.auth.claims``, keeps its keys and has every value masked).

The three lists are replaceable per service (``DecisionLog(...)``) and extendable
on the command line (``policy serve --decision-log-mask header:x-secret``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from policy.attributes import AttributeBag
from policy.logs import CLIP_CHARS, clip

from policy.runtime.decision import Decision

#: What a masked value is replaced with.
MASK = "[masked]"

#: Headers whose values are credentials or session state.
DEFAULT_MASKED_HEADERS: frozenset[str] = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "x-auth-token", "x-access-token", "x-csrf-token", "x-xsrf-token", "x-amz-security-token",
    "x-goog-iap-jwt-assertion", "x-forwarded-client-cert",
})

#: Attributes whose whole value is a credential or personal data (the JWT's claims).
DEFAULT_MASKED_ATTRIBUTES: frozenset[str] = frozenset({
    "request.api_key", "request.auth.raw_claims", "request.auth.claims",
    # Envoy's whole AttributeContext (headers, body, JWT payloads), for the opa adapter's input.
    "envoy.attributes", "envoy.attributes_by_path",
})

#: Query parameters that carry credentials (OAuth tokens and codes, API keys, signatures).
DEFAULT_MASKED_QUERY_PARAMS: frozenset[str] = frozenset({
    "access_token", "id_token", "refresh_token", "token", "code", "client_secret", "api_key", "apikey",
    "key", "password", "sig", "signature", "x-amz-signature", "x-amz-security-token", "x-goog-signature",
})

_HEADER_MAPS = ("request.headers", "response.headers")
#: Attributes whose string value may end in a ``?query``.
_PATH_ATTRIBUTES = ("request.path",)
#: Headers whose value may end in a ``?query``.
_PATH_HEADERS = frozenset({":path", "x-envoy-original-path", "referer"})
_QUERY_MAPS = ("request.query_params",)

_log = logging.getLogger("policy.decisions")
_DEBUG, _INFO = logging.DEBUG, logging.INFO


def log_decision(decision: Decision, api: str, seconds: float, code: str | None = None) -> None:
    """Log one decision on ``policy.decisions`` (INFO when not allowed, DEBUG when allowed)."""
    code = code or decision.code.name
    level = _DEBUG if code == "OK" else _INFO
    if not _log.isEnabledFor(level):
        return
    reason = decision.message
    if len(reason) > CLIP_CHARS:  # a denial's reason can quote the request (a list entry, a header)
        reason = clip(reason)
    _log.log(level, "decision %s: %s%s (api %s, rules %s)", decision.decision_id, code,
             f" — {reason}" if reason else "", api, ",".join(decision.rules) or "none",
             extra={"decision_id": decision.decision_id, "api": api, "code": code, "reason": reason,
                    "rules": list(decision.rules), "cache_hit": decision.cache_hit,
                    "duration_ms": round(seconds * 1000, 3), "generation": decision.generation})


class DecisionLog:
    """Sends each decision through the report rules as a masked attribute set.

    :param masked_headers: header names (any case) whose values are masked.
    :param masked_attributes: attribute names whose values are masked (every value, for a map).
    :param masked_query_params: query parameter names (any case) whose values are masked.
    """

    def __init__(
        self,
        masked_headers: Iterable[str] = DEFAULT_MASKED_HEADERS,
        masked_attributes: Iterable[str] = DEFAULT_MASKED_ATTRIBUTES,
        masked_query_params: Iterable[str] = DEFAULT_MASKED_QUERY_PARAMS,
    ) -> None:
        self.masked_headers = frozenset(h.lower() for h in masked_headers)
        self.masked_attributes = frozenset(masked_attributes)
        self.masked_query_params = frozenset(q.lower() for q in masked_query_params)
        self._fields = RecordFields(frozenset())  # for the snapshot last seen (``send``)

    def record(self, decision: Decision, request: AttributeBag | dict[str, Any]) -> AttributeBag:
        """The attribute set a decision is reported as: masked request attributes plus ``check.*``."""
        raw = request.raw if isinstance(request, AttributeBag) else request
        return self._record(decision, dict(raw))

    def _record(self, decision: Decision, values: dict[str, Any]) -> AttributeBag:
        """``record`` of a copy of the request's attributes this method may change."""
        if not self.masked_attributes.isdisjoint(values):
            for name in self.masked_attributes.intersection(values):
                value = values[name]
                values[name] = {key: MASK for key in value} if isinstance(value, Mapping) else MASK
        if self.masked_headers or self.masked_query_params:
            for name in _HEADER_MAPS:
                headers = values.get(name)
                if headers:
                    values[name] = self.mask_headers(headers)
        if self.masked_query_params:
            for name in _PATH_ATTRIBUTES:
                path = values.get(name)
                if isinstance(path, str) and "?" in path:
                    values[name] = self.mask_query(path)
            for name in _QUERY_MAPS:
                params = values.get(name)
                if params:
                    values[name] = self._mask_names(params, self.masked_query_params)
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
        """``headers`` with masked headers' values and masked query parameters replaced.

        Returns the same object when nothing needed masking.
        """
        lowered = set(map(str.lower, headers))
        out = headers
        if not self.masked_headers.isdisjoint(lowered):
            out = self._mask_names(headers, self.masked_headers)
        if self.masked_query_params and not _PATH_HEADERS.isdisjoint(lowered):
            out = {key: self.mask_query(value) if key.lower() in _PATH_HEADERS and isinstance(value, str)
                   else value for key, value in out.items()}
        return out

    def mask_query(self, path: str) -> str:
        """``path`` with the values of masked query parameters replaced (``/a?access_token=[masked]&x=1``)."""
        base, sep, query = path.partition("?")
        if not sep:
            return path
        query, hash_, fragment = query.partition("#")
        parts = []
        for part in query.split("&"):
            name, eq, _ = part.partition("=")
            if eq and unquote_plus(name).lower() in self.masked_query_params:
                part = f"{name}={MASK}"
            parts.append(part)
        return f"{base}?{'&'.join(parts)}{hash_}{fragment}"

    @staticmethod
    def _mask_names(values: Any, masked: frozenset[str]) -> Any:
        if masked.isdisjoint(map(str.lower, values)):
            return values
        return {key: MASK if key.lower() in masked else value for key, value in values.items()}

    def send(self, decision: Decision, request: AttributeBag, dispatcher: Any) -> None:
        """Report ``decision`` through ``dispatcher``'s report rules.

        The record is built and its instances queued a little later, together with other
        checks' records (``Dispatcher.report_soon``): the check only appends to a list.
        The record carries only the attributes (and map keys) the report rules can read
        (``Snapshot.report_reads``); when some expression cannot say, all of them.
        """
        raw = request.raw if isinstance(request, AttributeBag) else request
        reads = dispatcher.snapshot.report_reads
        if reads is None:
            values = dict(raw)  # copied now: the caller may reuse its dict
        else:
            fields = self._fields
            if fields.reads is not reads:
                fields = self._fields = RecordFields(reads)
            values = fields.take(raw)
        dispatcher.report_soon(self._record, decision, values)


class RecordFields:
    """The part of a request a decision-log record needs: what the report rules can read.

    :param reads: ``(name, None)`` for a whole attribute, ``(map name, key)`` for one key
        of a map (``Snapshot.report_reads``).

    A record made of :meth:`take` answers every expression that reads only ``reads``
    exactly as the whole request would; what no rule reads is never copied, masked or
    kept. The ``check.*`` attributes and ``context.reporter.kind`` are the record's own.
    """

    __slots__ = ("reads", "whole", "keyed")

    def __init__(self, reads: frozenset[tuple[str, str | None]]) -> None:
        self.reads = reads
        whole = {name for name, key in reads if key is None}
        keys: dict[str, set[str]] = {}
        for name, key in reads:
            if key is not None and name not in whole:
                keys.setdefault(name, set()).add(key)
        self.whole = tuple(sorted(whole))
        self.keyed = tuple((name, tuple(sorted(keys[name]))) for name in sorted(keys))

    def take(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes of ``raw`` that can be read, maps read by key cut to those keys (a new dict)."""
        values = {name: raw[name] for name in self.whole if name in raw}
        for name, keys in self.keyed:
            value = raw.get(name)
            if value is None:
                continue
            values[name] = {key: value[key] for key in keys if key in value} if isinstance(value, Mapping) else value
        return values


def with_extra_masks(log: DecisionLog, masks: Iterable[str]) -> DecisionLog:
    """A DecisionLog masking what ``log`` masks plus ``KIND:NAME`` items (``header``, ``query``, ``attribute``).

    :raises ValueError: an item without a known kind or without a name.
    """
    extra: dict[str, set[str]] = {"header": set(), "query": set(), "attribute": set()}
    for item in masks:
        kind, sep, name = item.partition(":")
        if not sep or kind not in extra or not name:
            raise ValueError(f"expected header:NAME, query:NAME or attribute:NAME, got {item!r}")
        extra[kind].add(name)
    return DecisionLog(log.masked_headers | extra["header"], log.masked_attributes | extra["attribute"],
                       log.masked_query_params | extra["query"])


__all__ = [
    "DEFAULT_MASKED_ATTRIBUTES",
    "DEFAULT_MASKED_HEADERS",
    "DEFAULT_MASKED_QUERY_PARAMS",
    "MASK",
    "DecisionLog",
    "RecordFields",
    "log_decision",
    "with_extra_masks",
]
