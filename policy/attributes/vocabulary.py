"""The attribute vocabulary: which attribute names exist and what type each has.

The standard vocabulary follows Istio/Mixer's attribute vocabulary, with the few
additions the Envoy transports need (``source.port``, ``request.url_path``,
``request.query_params``, ``context.extensions`` ...). Plugins add names through
the ``policy_attributes`` hook; a name may be declared twice only with one type.
"""

from __future__ import annotations

from policy.error_base import PolicyError

from collections.abc import Iterable, Iterator, Mapping

from policy.attributes.types import ValueType

S, I, D, B = ValueType.STRING, ValueType.INT64, ValueType.DOUBLE, ValueType.BOOL
T, DUR, IP, BY, M = (
    ValueType.TIMESTAMP,
    ValueType.DURATION,
    ValueType.IP_ADDRESS,
    ValueType.BYTES,
    ValueType.STRING_MAP,
)

_WORKLOAD = {
    "uid": S, "ip": IP, "port": I, "labels": M, "name": S, "namespace": S,
    "principal": S, "owner": S, "serviceAccount": S, "workload.uid": S,
    "workload.name": S, "workload.namespace": S, "container.name": S,
    "container.image": S, "metadata": M,
}

STANDARD_ATTRIBUTES: Mapping[str, ValueType] = {
    **{f"source.{k}": v for k, v in _WORKLOAD.items()},
    **{f"destination.{k}": v for k, v in _WORKLOAD.items()},
    "destination.service.host": S,
    "destination.service.uid": S,
    "destination.service.name": S,
    "destination.service.namespace": S,
    "origin.ip": IP,
    "request.headers": M,
    "request.id": S,
    "request.path": S,
    "request.url_path": S,
    "request.query_params": M,
    "request.host": S,
    "request.method": S,
    "request.reason": S,
    "request.referer": S,
    "request.scheme": S,
    "request.size": I,
    "request.total_size": I,
    "request.time": T,
    "request.useragent": S,
    "request.body": S,
    "request.auth.principal": S,
    "request.auth.audiences": S,
    "request.auth.presenter": S,
    "request.auth.claims": M,
    "request.auth.raw_claims": S,
    "request.api_key": S,
    "response.headers": M,
    "response.size": I,
    "response.total_size": I,
    "response.time": T,
    "response.duration": DUR,
    "response.code": I,
    "response.grpc_status": S,
    "response.grpc_message": S,
    "connection.id": S,
    "connection.event": S,
    "connection.received.bytes": I,
    "connection.received.bytes_total": I,
    "connection.sent.bytes": I,
    "connection.sent.bytes_total": I,
    "connection.duration": DUR,
    "connection.mtls": B,
    "connection.requested_server_name": S,
    "context.protocol": S,
    "context.time": T,
    "context.timestamp": T,
    "context.reporter.kind": S,
    "context.reporter.uid": S,
    "context.proxy_error_code": S,
    "context.extensions": M,
    "api.service": S,
    "api.version": S,
    "api.operation": S,
    "api.protocol": S,
    "check.error_code": I,
    "check.error_message": S,
    "check.cache_hit": B,
    "check.rules": S,
    "check.decision_id": S,
    "quota.cache_hit": B,
}

#: Attributes whose value differs on every request; a rule that reads one defeats the cache.
VOLATILE_ATTRIBUTES: frozenset[str] = frozenset(
    {"request.id", "request.time", "response.time", "context.time", "context.timestamp",
     "connection.id"}
)


class VocabularyError(PolicyError, ValueError):
    """A name was declared twice with different types, or an unknown type was given."""


class Vocabulary(Mapping[str, ValueType]):
    """An immutable mapping of attribute name to :class:`ValueType`."""

    __slots__ = ("_types", "get")

    def __init__(self, types: Mapping[str, ValueType] | None = None) -> None:
        self._types: dict[str, ValueType] = dict(types or {})
        # Transports look a type up per attribute per request: answer with the dict's own
        # C-level get rather than Mapping.get, which runs __getitem__ in Python.
        self.get = self._types.get  # type: ignore[method-assign]

    def __getitem__(self, name: str) -> ValueType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def merged(self, extra: Mapping[str, ValueType | str], source: str = "") -> "Vocabulary":
        """Return a new vocabulary with ``extra`` added; a conflicting type is an error."""
        types = dict(self._types)
        for name, value_type in extra.items():
            if isinstance(value_type, str):
                try:
                    value_type = ValueType[value_type.upper()]
                except KeyError:
                    raise VocabularyError(
                        f"attribute {name!r}{_from(source)}: unknown type {value_type!r}"
                    ) from None
            known = types.get(name)
            if known is not None and known is not value_type:
                raise VocabularyError(
                    f"attribute {name!r}{_from(source)} declared as {value_type.name},"
                    f" but it is already {known.name}"
                )
            types[name] = value_type
        return Vocabulary(types)


def _from(source: str) -> str:
    return f" (from {source})" if source else ""


def standard_vocabulary(extra: Iterable[Mapping[str, ValueType | str]] = ()) -> Vocabulary:
    """Build Istio's standard vocabulary, plus any ``extra`` declarations."""
    vocabulary = Vocabulary(STANDARD_ATTRIBUTES)
    for declarations in extra:
        vocabulary = vocabulary.merged(declarations)
    return vocabulary
