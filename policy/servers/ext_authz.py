"""Envoy's external authorization API (``envoy.service.auth.v3.Authorization/Check``).

A translator only: the ``CheckRequest`` becomes attributes
(:mod:`policy.servers.envoy_attributes`), the decision becomes a ``CheckResponse``:

* **allowed**: status OK and an ``ok_response`` with the rules' request header
  operations (``headers``; REPLACE → ``OVERWRITE_IF_EXISTS_OR_ADD``, APPEND →
  ``APPEND_IF_EXISTS_OR_ADD``; REMOVE → ``headers_to_remove``) and response header
  operations (``response_headers_to_add``), and the adapters' query rewrites
  (``query_parameters_to_set`` / ``query_parameters_to_remove``). ext_authz v3 cannot
  remove response headers, so a response REMOVE is not sent (the native API carries it);
* **denied**: the decision's status (code and message) and a ``denied_response``
  whose HTTP status is the decision's own ``http_status`` or the code's mapping
  (:func:`policy.sdk.http_status`: 403, 401, 429, 503, 400 ...), whose body is the
  decision's ``body`` or ``CODE:message``, and which adds the response headers;
* both carry ``dynamic_metadata`` (Envoy files it under ``envoy.filters.http.ext_authz``)
  with the decision's ``metadata`` (the policy's ``dynamic_metadata``) and ``decision_id``
  (a UUID, as OPA-Envoy's), so an access log can show why: ``%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%``.

Quotas: the service charges the QuotaSpecs bound to the request
(:mod:`policy.config.quota_specs`; ``check(..., quota_specs=request.id)``) with
``request.id`` as deduplication id; an exhausted quota answers RESOURCE_EXHAUSTED / 429.

Translation follows a per-snapshot plan (:func:`plan_for`): only the attributes (and
header keys) some expression of the config can read (``Snapshot.reads``, computed when the
snapshot is built) are translated. An attribute in the
plan is translated exactly as without one, so no decision or cache key can tell the
difference; the others would only cost time.

Errors: a request that does not decode, is larger than :data:`MAX_REQUEST_BYTES` or
has an address that is not an IP answers INVALID_ARGUMENT; a failure inside the
service, or a decision whose code is INTERNAL or UNKNOWN (an adapter that could not
decide: a Rego evaluation error, a malformed decision, a crash), answers a gRPC
INTERNAL error rather than a denied response, as OPA-Envoy answers an evaluation
error, so Envoy's ``failure_mode_allow`` / ``status_on_error`` decide. OPA-Envoy's input document is built by the opa adapter from its
``requestcontext`` instance (``adapters/opa/_input.py``), so the decision cache sees
what it reads.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from policy.attributes import AttributeBag
from policy.runtime.decision import Decision
from policy.runtime.service import PolicyService
from policy.config.snapshot import Snapshot
from policy.sdk import Code, HeaderOperation, HeaderOperationKind, http_status
from policy.servers._grpc import add_unary_handlers
from policy.servers.envoy_attributes import FULL, Plan, TranslationError, check_request_attributes
from policy.servers.planned_translation import compile_plan

log = logging.getLogger("policy.servers.ext_authz")

SERVICE_NAME = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name

#: Largest CheckRequest accepted (grpc's own limit, 4 MiB, answers RESOURCE_EXHAUSTED above it).
MAX_REQUEST_BYTES = 1024 * 1024

_CheckRequest = external_auth_pb2.CheckRequest
_CheckResponse = external_auth_pb2.CheckResponse
_HeaderValueOption = base_pb2.HeaderValueOption
_HeaderValue = base_pb2.HeaderValue
_ACTION = {
    HeaderOperationKind.REPLACE: _HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    HeaderOperationKind.APPEND: _HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
}
_METADATA_FIELD = _CheckResponse.DESCRIPTOR.fields_by_name["dynamic_metadata"].number
#: Decision codes that say the service could not decide (an adapter's evaluation error, a crash):
#: answered as a gRPC error, as OPA-Envoy answers an evaluation error, so Envoy's
#: ``failure_mode_allow`` / ``status_on_error`` decide instead of a denied response.
_ERROR_CODES = frozenset({Code.INTERNAL, Code.UNKNOWN})


def _options(operations: tuple[HeaderOperation, ...]) -> list[Any]:
    return [_HeaderValueOption(header=_HeaderValue(key=op.name, value=op.value), append_action=_ACTION[op.operation])
            for op in operations if op.operation is not HeaderOperationKind.REMOVE]


def _value(value: Any) -> struct_pb2.Value:
    """A metadata value as a ``google.protobuf.Value`` (other types by their text)."""
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=value)
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    if isinstance(value, Mapping):
        return struct_pb2.Value(struct_value=struct_pb2.Struct(fields={str(k): _value(v) for k, v in value.items()}))
    if isinstance(value, (list, tuple, set, frozenset)):
        return struct_pb2.Value(list_value=struct_pb2.ListValue(values=[_value(v) for v in value]))
    return struct_pb2.Value(string_value=str(value))


def _metadata(decision: Decision) -> struct_pb2.Struct:
    fields = {str(k): _value(v) for k, v in decision.metadata.items()}
    return struct_pb2.Struct(fields=fields)


def check_response(decision: Decision, *, with_id: bool = True) -> _CheckResponse:
    """The ``CheckResponse`` for a decision (``with_id=False`` leaves the decision id out)."""
    code = decision.code
    response = _CheckResponse(dynamic_metadata=_metadata(decision))
    if with_id:
        response.dynamic_metadata.fields["decision_id"].string_value = decision.decision_id
    if code == Code.OK:
        response.status.code = 0
        ok = response.ok_response
        ok.headers.extend(_options(decision.request_headers))
        ok.headers_to_remove.extend(
            op.name for op in decision.request_headers if op.operation is HeaderOperationKind.REMOVE)
        ok.response_headers_to_add.extend(_options(decision.response_headers))
        ok.query_parameters_to_set.extend(base_pb2.QueryParameter(key=key, value=value)
                                          for key, value in decision.query_parameters_to_set)
        ok.query_parameters_to_remove.extend(decision.query_parameters_to_remove)
        return response
    message = decision.message
    response.status.CopyFrom(status_pb2.Status(code=int(code), message=message))
    precondition_denied = not decision.status.ok
    status = (decision.http_status if precondition_denied and decision.http_status else None) or http_status(code)
    body = decision.body if precondition_denied and decision.body is not None else f"{code.name}:{message}"
    response.denied_response.CopyFrom(external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=status), body=body, headers=_options(decision.response_headers)))
    return response


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# dynamic_metadata { fields { key: "decision_id" value { string_value: ... } } }, split around the id.
_ID_KEY = _delimited(1, b"decision_id")


_METADATA_TAG = bytes((_METADATA_FIELD << 3 | 2,))


def _id_tail(decision_id: str) -> bytes:
    raw = decision_id.encode()
    size = len(raw)
    if size < 100:  # every length below fits one varint byte: skip the general encoder
        entry = size + len(_ID_KEY) + 4  # key field, value field tag and length, Value tag and length, id
        return b"%b%c\x0a%c%b\x12%c\x1a%c%b" % (_METADATA_TAG, entry + 2, entry, _ID_KEY, size + 2, size, raw)
    entry = _ID_KEY + _delimited(2, _delimited(3, raw))
    return _delimited(_METADATA_FIELD, _delimited(1, entry))


def encode_check_response(decision: Decision) -> bytes:
    """The serialized ``CheckResponse`` for a decision.

    The request-independent part is encoded once per cached decision (kept in
    ``decision.memo``); each response appends its decision id as a second
    ``dynamic_metadata`` field, which protobuf merges into the first (map entries
    of a repeated embedded message merge). A quota outcome differs per request, so
    a decision carrying quota results that changed its answer is encoded whole.
    """
    if decision.quotas and decision.code != decision.status.code:
        return check_response(decision).SerializeToString()
    memo = decision.memo
    prefix = memo.get("ext_authz")
    if prefix is None:
        prefix = memo["ext_authz"] = _shared_prefix(decision)
    return prefix + _id_tail(decision.decision_id)


#: Encoded responses (decision id left out) of plain decisions, by what they are made of:
#: an uncached check's decision is new each time, its response mostly one of a few.
_prefixes: dict[tuple[Any, ...], bytes] = {}
_PREFIX_LIMIT = 1024  # distinct responses kept; then the memo starts over
_PLAIN_TEXT = 256  # longest message and body a key may hold


def _shared_prefix(decision: Decision) -> bytes:
    """``decision``'s encoded response without its id, shared between decisions that answer the same.

    Only for a decision whose response is its status, HTTP status and body (no metadata,
    quotas, header or query operations) with short texts; any other is encoded anew.
    """
    status = decision.status
    body = decision.body
    if (decision.metadata or decision.quotas or decision.request_headers or decision.response_headers
            or decision.query_parameters_to_set or decision.query_parameters_to_remove
            or len(status.message) > _PLAIN_TEXT or (body is not None and len(body) > _PLAIN_TEXT)):
        return check_response(decision, with_id=False).SerializeToString()
    key = (status.code, status.message, decision.http_status, body)
    prefix = _prefixes.get(key)
    if prefix is None:
        prefix = check_response(decision, with_id=False).SerializeToString()
        if len(_prefixes) >= _PREFIX_LIMIT:
            _prefixes.clear()
        _prefixes[key] = prefix
    return prefix


def request_bag(request: Any, plan: Plan = FULL) -> AttributeBag:
    """The attribute bag of a ``CheckRequest``: its attributes (see :mod:`policy.servers.envoy_attributes`).

    :param plan: which attributes to translate (default: every one the request carries).
    :raises TranslationError: a field that does not translate (see :mod:`policy.servers.envoy_attributes`).
    """
    return AttributeBag.trusted(check_request_attributes(request, plan))


_plans: weakref.WeakKeyDictionary[Snapshot, Plan] = weakref.WeakKeyDictionary()
_translations: weakref.WeakKeyDictionary[Snapshot, Callable[[Any], dict[str, Any]]] = weakref.WeakKeyDictionary()


def plan_for(snapshot: Snapshot) -> Plan:
    """The translation plan of a snapshot: only what its expressions can read (``Snapshot.reads``), made once."""
    plan = _plans.get(snapshot)
    if plan is None:
        reads = snapshot.reads
        plan = _plans[snapshot] = FULL if reads is None else Plan.for_reads(reads)
    return plan


def translation_for(snapshot: Snapshot) -> Callable[[Any], dict[str, Any]]:
    """The function translating a ``CheckRequest`` by the snapshot's plan, made once.

    Written for the plan when :mod:`policy.servers.planned_translation` covers it, else
    :func:`check_request_attributes` with the plan; the two give the same attributes.
    """
    translate = _translations.get(snapshot)
    if translate is None:
        plan = plan_for(snapshot)
        translate = compile_plan(plan) or partial(check_request_attributes, plan=plan)
        _translations[snapshot] = translate
    return translate


class AuthorizationServicer:
    """Serves ``envoy.service.auth.v3.Authorization`` from a :class:`PolicyService`."""

    def __init__(self, service: PolicyService, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.service = service
        self.max_request_bytes = max_request_bytes
        # the last snapshot and its translation
        self._planned: tuple[Snapshot | None, Callable[[Any], dict[str, Any]]] = (None, check_request_attributes)

    async def Check(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:  # noqa: N802 - gRPC name
        """Decide one request Envoy asks about; returns the serialized ``CheckResponse``."""
        if len(data) > self.max_request_bytes:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"CheckRequest of {len(data)} bytes is larger than the {self.max_request_bytes}"
                                " bytes accepted (lower with_request_body.max_request_bytes)")
        try:
            request = _CheckRequest.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"request is not a valid {_CheckRequest.DESCRIPTOR.full_name}: {exc}")
        # No await from here to service.check: the snapshot whose plan translates the request
        # is the one that decides it, even while a reload swaps snapshots.
        service = self.service
        snapshot = service.snapshot
        last, translate = self._planned
        if snapshot is not last:
            translate = translation_for(snapshot)
            self._planned = (snapshot, translate)
        try:
            bag = AttributeBag.trusted(translate(request))
        except TranslationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            if snapshot.quota_bindings:  # the request id deduplicates QuotaSpec charges
                decision = await service.check(bag, api="ext_authz", quota_specs=request.attributes.request.http.id)
            else:
                answer = service.check_soon(bag, "ext_authz")
                decision = answer if isinstance(answer, Decision) else await answer
            if decision.status.code not in _ERROR_CODES:
                return encode_check_response(decision)
            failure = decision.message
        except Exception as exc:  # answered as a gRPC error: Envoy's failure_mode_allow decides
            log.exception("ext_authz check failed")
            failure = f"{type(exc).__name__}: {exc}"
        await context.abort(grpc.StatusCode.INTERNAL, f"policy check failed: {failure}")
        raise AssertionError("unreachable")  # context.abort raises


def register(server: grpc.aio.Server, service: PolicyService) -> list[str]:
    """Add the ext_authz v3 API to ``server``; returns the service names registered."""
    servicer = AuthorizationServicer(service)
    add_unary_handlers(server, SERVICE_NAME, {"Check": (servicer.Check, None)})
    return [SERVICE_NAME]
