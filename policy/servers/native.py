"""The native ``policy.v1.Policy`` API: Mixer-style Check and Report over gRPC.

A translator only: requests become attribute bags, decisions become responses.
A malformed request is answered with INVALID_ARGUMENT naming the attribute.
Check normalizes ``request.path`` / ``request.url_path`` as Envoy would
(:mod:`policy.servers.paths`; ``policy serve --path-normalization``).
Check reads a request's attributes off the wire (:mod:`policy.servers.native_wire`)
when it is laid out as serializers write it, and through protobuf otherwise; both give
the same values and errors.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from policy.attributes import AttributeBag, Presence
from policy.runtime.decision import Decision
from policy.runtime.service import PolicyService
from policy.sdk import HeaderOperationKind, QuotaArgs
from policy.servers._grpc import add_unary_handlers, decode
from policy.servers.paths import DEFAULT_MODE, normalize_attributes
from policy.servers.native_wire import WireDecoder
from policy.servers.native_codec import CodecError, attributes_from_proto, duration_to_proto, status_to_proto
from policy.v1 import policy_pb2

_CheckRequest = policy_pb2.CheckRequest

log = logging.getLogger("policy.servers.native")

SERVICE_NAME = policy_pb2.DESCRIPTOR.services_by_name["Policy"].full_name

_Match = policy_pb2.ReferencedAttributes.AttributeMatch
_CONDITION = {Presence.ABSENT: policy_pb2.ReferencedAttributes.ABSENCE,
              Presence.EXACT: policy_pb2.ReferencedAttributes.EXACT}
_OPERATION = {
    HeaderOperationKind.REPLACE: policy_pb2.HeaderOperation.REPLACE,
    HeaderOperationKind.APPEND: policy_pb2.HeaderOperation.APPEND,
    HeaderOperationKind.REMOVE: policy_pb2.HeaderOperation.REMOVE,
}


def _precondition(decision: Decision) -> policy_pb2.CheckResponse.PreconditionResult:
    result = policy_pb2.CheckResponse.PreconditionResult(
        status=status_to_proto(int(decision.status.code), decision.status.message),
        valid_use_count=decision.valid_use_count or 0,
        referenced_attributes=policy_pb2.ReferencedAttributes(attribute_matches=[
            _Match(name=r.name, map_key=r.map_key or "", condition=_CONDITION[r.presence])
            for r in decision.referenced
        ]),
        route_directive=policy_pb2.RouteDirective(
            request_header_operations=[
                policy_pb2.HeaderOperation(name=h.name, value=h.value, operation=_OPERATION[h.operation])
                for h in decision.request_headers
            ],
            response_header_operations=[
                policy_pb2.HeaderOperation(name=h.name, value=h.value, operation=_OPERATION[h.operation])
                for h in decision.response_headers
            ],
            direct_response_code=decision.http_status or 0,
            direct_response_body=decision.body or "",
        ),
    )
    if decision.valid_duration:
        result.valid_duration.CopyFrom(duration_to_proto(decision.valid_duration))
    return result


def _field_bytes(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field (tag, varint length, bytes)."""
    length = len(value)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            return bytes([number << 3 | 2]) + bytes(varint) + value


_DECISION_ID_FIELD = policy_pb2.CheckResponse.DESCRIPTOR.fields_by_name["decision_id"].number
_DECISION_ID_TAG = _DECISION_ID_FIELD << 3 | 2


def encode_response(decision: Decision) -> bytes:
    """The serialized ``CheckResponse`` for a decision.

    The part that does not change between requests (precondition, matched rules) is
    encoded once per cached decision and kept in ``decision.memo``; each response
    appends its own decision id and quota results, which protobuf parses the same
    as one message (fields may come in any order).
    """
    prefix = decision.memo.get("native")
    if prefix is None:
        prefix = policy_pb2.CheckResponse(
            precondition=_precondition(decision), matched_rules=decision.rules).SerializeToString()
        decision.memo["native"] = prefix
    raw = decision.decision_id.encode()
    if len(raw) < 0x80:  # a UUID: one length byte, no general varint encoder
        tail = b"%c%c%b" % (_DECISION_ID_TAG, len(raw), raw)
    else:
        tail = _field_bytes(_DECISION_ID_FIELD, raw)
    if decision.quotas:
        quotas = policy_pb2.CheckResponse()
        _add_quotas(quotas, decision)
        tail += quotas.SerializeToString()
    return prefix + tail


def _add_quotas(response: policy_pb2.CheckResponse, decision: Decision) -> None:
    for name, quota in decision.quotas.items():
        entry = response.quotas[name]
        entry.status.CopyFrom(status_to_proto(int(quota.status.code), quota.status.message))
        entry.granted_amount = quota.granted_amount
        if quota.valid_duration:
            entry.valid_duration.CopyFrom(duration_to_proto(quota.valid_duration))


class PolicyServicer:
    """Serves ``policy.v1.Policy`` from a :class:`PolicyService` (requests arrive as raw bytes)."""

    def __init__(self, service: PolicyService, path_normalization: str = DEFAULT_MODE) -> None:
        self.service = service
        self.path_normalization = path_normalization
        self._wire = WireDecoder(service.host.vocabulary, path_normalization)

    async def Check(self, data: bytes, context: grpc.aio.ServicerContext) -> Any:
        """Decide one request (and charge its quotas when the precondition allows)."""
        service = self.service
        vocabulary = service.host.vocabulary
        wire = self._wire
        if wire.vocabulary is not vocabulary:
            wire = self._wire = WireDecoder(vocabulary, self.path_normalization)
        values = wire.attributes(data)  # paths normalized; None: not the plain layout it reads
        quotas = None
        if values is None:
            values, quotas = await self._decode(data, vocabulary, context)
            if self.path_normalization != "none":
                values = normalize_attributes(values, self.path_normalization)
        bag = AttributeBag.trusted(values)
        if quotas:
            decision = await service.check(bag, quotas, api="native")
        else:
            answer = service.check_soon(bag, "native")
            decision = answer if isinstance(answer, Decision) else await answer
        return encode_response(decision)

    async def _decode(self, data: bytes, vocabulary: Any, context: grpc.aio.ServicerContext
                      ) -> tuple[dict[str, Any], dict[str, QuotaArgs] | None]:
        """Attributes and quotas of a request through protobuf; aborts INVALID_ARGUMENT when malformed."""
        try:
            request = _CheckRequest.FromString(data)
        except (DecodeError, ValueError, RuntimeError):
            request = await decode(policy_pb2.CheckRequest, data, context)  # aborts INVALID_ARGUMENT, naming why
        try:
            values = attributes_from_proto(request.attributes, vocabulary)
        except CodecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        quotas = None
        if request.quotas:
            quotas = {}
            for name, params in request.quotas.items():
                if params.amount < 0:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        f"quota {name!r}: amount must not be negative, got {params.amount}")
                quotas[name] = QuotaArgs(name, params.amount or 1, params.best_effort, request.deduplication_id)
        return values, quotas

    async def Report(self, data: bytes, context: grpc.aio.ServicerContext) -> Any:
        """Queue report instances for a batch of attribute sets; never waits for adapters."""
        request = await decode(policy_pb2.ReportRequest, data, context)
        vocabulary = self.service.host.vocabulary
        bags = []
        for index, attributes in enumerate(request.attributes):
            try:
                bags.append(AttributeBag.trusted(attributes_from_proto(attributes, vocabulary)))
            except CodecError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"attributes[{index}]: {exc}")
        self.service.report(bags)
        return policy_pb2.ReportResponse()


def register(server: grpc.aio.Server, service: PolicyService, path_normalization: str = DEFAULT_MODE) -> list[str]:
    """Add the native API to ``server``; returns the service names registered."""
    servicer = PolicyServicer(service, path_normalization)
    add_unary_handlers(server, SERVICE_NAME, {
        "Check": (servicer.Check, None),
        "Report": (servicer.Report, policy_pb2.ReportResponse),
    })
    return [SERVICE_NAME]
