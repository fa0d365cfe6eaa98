"""Turning a policy decision (a boolean or OPA-Envoy's object) into a check result.

Follows ``opa-envoy-plugin``'s ``envoyauth/response.go``:

* ``true`` / ``false``, or an object whose ``allowed`` is a boolean (an object without
  it, or any other value, is an error);
* ``headers`` (an object of string or list-of-string values, or a list of such
  objects): request headers to set on an allowed request, response headers on a
  denied one;
* ``request_headers_to_remove`` (a list of names) and ``response_headers_to_add``
  (like ``headers``) apply to allowed requests;
* ``http_status`` (``status_code`` is accepted too) and ``body`` shape a denial;
* ``dynamic_metadata`` (an object) becomes the result's metadata.

A malformed member is a :class:`DecisionError`, which the handler answers with its
fail mode, as OPA-Envoy answers an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy import CheckResult, Code, HeaderOperation, HeaderOperationKind, Status

REPLACE, APPEND, REMOVE = HeaderOperationKind.REPLACE, HeaderOperationKind.APPEND, HeaderOperationKind.REMOVE


class DecisionError(ValueError):
    """A decision that is neither a boolean nor a well-formed decision object."""


def _header_maps(value: Any, member: str) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        return value
    raise DecisionError(f"{member} must be an object (or a list of objects), got {type(value).__name__}")


def _headers(decision: Mapping[str, Any], member: str, first: HeaderOperationKind) -> list[HeaderOperation]:
    value = decision.get(member)
    if value is None:
        return []
    ops: list[HeaderOperation] = []
    seen: set[str] = set()
    for mapping in _header_maps(value, member):
        for name, item in mapping.items():
            values = item if isinstance(item, list) else [item]
            for text in values:
                if not isinstance(text, str):
                    raise DecisionError(f"{member}[{name!r}] must be a string or a list of strings")
                kind = first if name not in seen else APPEND
                seen.add(name)
                ops.append(HeaderOperation(str(name), text, kind))
    return ops


def _status(decision: Mapping[str, Any]) -> int | None:
    value = decision.get("http_status", decision.get("status_code"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise DecisionError(f"http_status must be a number, got {value!r}")
    if not 100 <= int(value) <= 599:
        raise DecisionError(f"invalid HTTP status code {int(value)}")
    return int(value)


def to_result(decision: Any, path: str, valid_duration: float, valid_use_count: int) -> CheckResult:
    """The check result a decision asks for; raise DecisionError when it is malformed."""
    if isinstance(decision, bool):
        if decision:
            return CheckResult(Status(Code.OK, f"OPA: allowed by {path}"), valid_duration, valid_use_count)
        return CheckResult.deny(f"OPA: denied by {path}", valid_duration=valid_duration,
                                valid_use_count=valid_use_count)
    if not isinstance(decision, Mapping):
        raise DecisionError(f"illegal value for policy evaluation result: {type(decision).__name__}"
                            f" ({decision!r:.60}); expected a boolean or an object with 'allowed'")
    allowed = decision.get("allowed")
    if "allowed" not in decision:
        raise DecisionError('unable to determine evaluation result due to missing "allowed" key')
    if not isinstance(allowed, bool):
        raise DecisionError(f"expected allowed to be a boolean, got {allowed!r}")
    metadata = decision.get("dynamic_metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise DecisionError("dynamic_metadata must be an object")
    body = decision.get("body")
    if body is not None and not isinstance(body, str):
        raise DecisionError("body must be a string")
    status_code = _status(decision)
    if allowed:
        removes = decision.get("request_headers_to_remove") or []
        if not isinstance(removes, list) or not all(isinstance(n, str) for n in removes):
            raise DecisionError("request_headers_to_remove must be a list of strings")
        request_ops = _headers(decision, "headers", REPLACE) + [HeaderOperation(n, "", REMOVE) for n in removes]
        response_ops = _headers(decision, "response_headers_to_add", APPEND)
        return CheckResult(Status(Code.OK, f"OPA: allowed by {path}"), valid_duration, valid_use_count,
                           tuple(request_ops), tuple(response_ops), metadata=dict(metadata or {}))
    return CheckResult(Status(Code.PERMISSION_DENIED, f"OPA: denied by {path}"), valid_duration, valid_use_count,
                       (), tuple(_headers(decision, "headers", REPLACE)), status_code, body,
                       dict(metadata or {}))


__all__ = ["DecisionError", "to_result"]
