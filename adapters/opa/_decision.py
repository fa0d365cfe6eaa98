"""Turning a policy decision (a boolean or OPA-Envoy's object) into a check result.

Follows ``opa-envoy-plugin``'s ``envoyauth/response.go``, member by member (each getter
below is the peer's ``EvalResult.Get…``, tested with its own cases in
``tests/opa/envoy_plugin/response_cases.yaml``):

* ``true`` / ``false``, or an object whose ``allowed`` is a boolean (an object without
  it, or any other value, is an error);
* ``headers`` (an object of string or list-of-string values, or a list of such
  objects): request headers to set on an allowed request, response headers on a
  denied one;
* ``request_headers_to_remove`` (a list of names) and ``response_headers_to_add``
  (like ``headers``) apply to allowed requests;
* ``http_status`` (a status code Envoy knows; 403 when absent) and ``body`` (empty when
  absent) shape a denial — no handler or decision names reach the client;
* ``dynamic_metadata`` (an object) becomes the result's metadata as the policy returns it;
* ``query_parameters_to_set`` (an object of string or list-of-string values) and
  ``query_parameters_to_remove`` (a list of names) rewrite an allowed request's query.

A malformed member is a :class:`DecisionError`, which the handler answers with its
fail mode (CLOSED: an error the ext_authz server answers as a gRPC error), as
OPA-Envoy answers an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.type.v3 import http_status_pb2

from policy import CheckResult, Code, HeaderOperation, HeaderOperationKind, Status

REPLACE, APPEND, REMOVE = HeaderOperationKind.REPLACE, HeaderOperationKind.APPEND, HeaderOperationKind.REMOVE

#: HTTP statuses Envoy's ``envoy.type.v3.StatusCode`` names (OPA-Envoy refuses others, e.g. 418).
ENVOY_STATUSES = frozenset(v for v in http_status_pb2.StatusCode.values() if v)


class DecisionError(ValueError):
    """A decision that is neither a boolean nor a well-formed decision object."""


def _go_type(value: Any) -> str:
    """The Go type name OPA-Envoy's messages use for a JSON value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "json.Number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    return "<nil>" if value is None else type(value).__name__


def _invalid(decision: Any) -> DecisionError:
    return DecisionError(f"illegal value for policy evaluation result: {_go_type(decision)}")


_ABSENT = object()


def _member(decision: Any, member: str) -> Any:
    """A decision object's ``member``; ``_ABSENT`` for a boolean decision or a missing member."""
    if isinstance(decision, bool):
        return _ABSENT
    if not isinstance(decision, Mapping):
        raise _invalid(decision)
    return decision.get(member, _ABSENT)


def is_allowed(decision: Any) -> bool:
    """OPA-Envoy's ``IsAllowed``: the boolean, or the object's ``allowed``."""
    if isinstance(decision, bool):
        return decision
    if isinstance(decision, Mapping):
        if "allowed" not in decision:
            raise DecisionError('unable to determine evaluation result due to missing "allowed" key')
        allowed = decision["allowed"]
        if not isinstance(allowed, bool):
            raise DecisionError("type assertion error, expected allowed to be of type 'boolean' but got"
                                f" '{_go_type(allowed)}'")
        return allowed
    raise _invalid(decision)


def string_list(decision: Any, member: str) -> list[str]:
    """A list-of-strings member (``request_headers_to_remove``, ``query_parameters_to_remove``)."""
    value = _member(decision, member)
    if value is _ABSENT:
        return []
    if not isinstance(value, list):
        raise DecisionError(f"type assertion error, expected {member} to be of type '[]string' but got"
                            f" '{_go_type(value)}'")
    for item in value:
        if not isinstance(item, str):
            raise DecisionError(f"type assertion error, expected {member} value to be of type 'string' but got"
                                f" '{_go_type(item)}'")
    return list(value)


def _pairs(mapping: Mapping[str, Any], what: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in mapping.items():
        if isinstance(value, str):
            out.append((key, value))
        elif isinstance(value, list):
            for item in value:
                if not isinstance(item, str):
                    raise DecisionError(f"invalid value type {_go_type(item)} for {what} '{key}'")
                out.append((key, item))
        else:
            raise DecisionError(f"invalid value type {_go_type(value)} for {what} '{key}'")
    return out


def header_pairs(decision: Any, member: str) -> list[tuple[str, str]]:
    """A headers member (``headers``, ``response_headers_to_add``) as (name, value) pairs, in order."""
    value = _member(decision, member)
    if value is _ABSENT:
        return []
    if isinstance(value, Mapping):
        return _pairs(value, "header")
    if isinstance(value, list):
        out: list[tuple[str, str]] = []
        for item in value:
            if not isinstance(item, Mapping):
                raise DecisionError(f"type assertion error, expected headers to be of type 'object' but got"
                                    f" '{_go_type(item)}'")
            out.extend(_pairs(item, "header"))
        return out
    raise DecisionError(f"type assertion error, expected headers to be of type 'object' but got '{_go_type(value)}'")


def query_parameters_to_set(decision: Any) -> list[tuple[str, str]]:
    """``query_parameters_to_set`` as (key, value) pairs (an object of string or list-of-string values)."""
    value = _member(decision, "query_parameters_to_set")
    if value is _ABSENT:
        return []
    if not isinstance(value, Mapping):
        raise DecisionError("type assertion error, expected query_parameters_to_set to be of type 'object' but"
                            f" got '{_go_type(value)}'")
    return _pairs(value, "query parameter")


def response_body(decision: Any) -> str:
    """The denial's ``body`` (empty when absent)."""
    if not isinstance(decision, Mapping) or "body" not in decision:
        return ""
    body = decision["body"]
    if not isinstance(body, str):
        raise DecisionError(f"type assertion error, expected body to be of type 'string' but got '{_go_type(body)}'")
    return body


def http_status(decision: Any) -> int:
    """The denial's ``http_status`` (403 when absent); a status Envoy does not name is an error."""
    if isinstance(decision, bool):
        if decision:
            raise DecisionError("HTTP status code undefined for simple 'allow'")
        return 403
    if not isinstance(decision, Mapping):
        raise _invalid(decision)
    if "http_status" not in decision:
        return 403
    value = decision["http_status"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecisionError(f"type assertion error, expected http_status to be of type 'number' but got"
                            f" '{_go_type(value)}'")
    if int(value) != value:
        raise DecisionError(f"error converting JSON number to int: {value}")
    if int(value) not in ENVOY_STATUSES:
        raise DecisionError(f"invalid HTTP status code {int(value)}")
    return int(value)


def dynamic_metadata(decision: Any) -> dict[str, Any] | None:
    """``dynamic_metadata`` as the policy returns it (None when absent)."""
    if isinstance(decision, bool):
        if decision:
            raise DecisionError("dynamic metadata undefined for boolean decision")
        return None
    if not isinstance(decision, Mapping) or "dynamic_metadata" not in decision:
        return None
    value = decision["dynamic_metadata"]
    if not isinstance(value, Mapping):
        raise DecisionError(f"type assertion error, expected dynamic_metadata to be of type 'object' but got"
                            f" '{_go_type(value)}'")
    return dict(value)


def _ops(pairs: list[tuple[str, str]], first: HeaderOperationKind) -> list[HeaderOperation]:
    ops: list[HeaderOperation] = []
    seen: set[str] = set()
    for name, value in pairs:
        ops.append(HeaderOperation(name, value, first if name not in seen else APPEND))
        seen.add(name)
    return ops


def to_result(decision: Any, path: str, valid_duration: float, valid_use_count: int) -> CheckResult:
    """The check result a decision asks for; raise DecisionError when it is malformed."""
    allowed = is_allowed(decision)
    metadata = dynamic_metadata(decision) if isinstance(decision, Mapping) else None
    if allowed:
        query_set = tuple(query_parameters_to_set(decision))
        query_remove = tuple(string_list(decision, "query_parameters_to_remove"))
        removes = string_list(decision, "request_headers_to_remove")
        request_ops = _ops(header_pairs(decision, "headers"), REPLACE) + [HeaderOperation(n, "", REMOVE)
                                                                          for n in removes]
        response_ops = _ops(header_pairs(decision, "response_headers_to_add"), APPEND)
        return CheckResult(Status(Code.OK, f"OPA: allowed by {path}"), valid_duration, valid_use_count,
                           tuple(request_ops), tuple(response_ops), metadata=metadata or {},
                           query_parameters_to_set=query_set, query_parameters_to_remove=query_remove)
    return CheckResult(Status(Code.PERMISSION_DENIED, f"OPA: denied by {path}"), valid_duration, valid_use_count,
                       (), tuple(_ops(header_pairs(decision, "headers"), REPLACE)), http_status(decision),
                       response_body(decision), metadata or {})


__all__ = ["DecisionError", "ENVOY_STATUSES", "dynamic_metadata", "header_pairs", "http_status", "is_allowed",
           "query_parameters_to_set", "response_body", "string_list", "to_result"]
