"""One request as AuthorizationPolicy rules see it, derived from a ``requestcontext`` instance.

Istio matches some fields on derived values, computed here once per request:

* principals are compared without the ``spiffe://`` scheme (Istio prefixes the policy's
  value with it, Envoy compares the peer certificate's URI SAN);
* the source namespace and service account come from the peer principal
  (``<trust domain>/ns/<namespace>/sa/<account>``), as Istio derives them from the
  certificate; without a principal the ``source_namespace`` attribute is used;
* paths are matched without the query string (Envoy's ``url_path``);
* empty values stand for absent ones: the template's defaults give ``""``, ``0``, an empty
  map or the unspecified address ``0.0.0.0`` for an attribute the request lacks;
* hosts are compared case-insensitively, and a host value without a port also
  matches the request's host with any port;
* JWT claims come from ``request.auth.raw_claims`` (the payload as JSON, with lists and
  nested objects) when present, else from the ``request.auth.claims`` string map. As in
  Envoy's metadata list matcher, a claim matches only as a string or as one string of a
  list of strings: ``"g1,g2"`` is one string, ``true`` and ``7`` match no string;
* the JWT identity ``requestPrincipals`` compare is the ``iss`` and ``sub`` claims; without
  them (the native API given only ``request.auth.principal``) the principal is split at
  its last ``/``;
* ``context.protocol`` ``tcp`` marks a TCP (network filter) check: Istio's TCP filter has
  no HTTP attribute, see :mod:`adapters.rbac._policy`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SPIFFE = "spiffe://"
_MISSING = object()
_EMPTY: Mapping[str, str] = {}


def _address(ip: Any) -> Any:
    """An IP address, or None for an absent one (the template's default is the unspecified address)."""
    return None if ip is None or ip.is_unspecified else ip


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    head, sep, tail = host.rpartition(":")
    return head if sep and tail.isdigit() else host


class RequestView:
    """Values a rule compares, derived once from the instance (see the module docstring)."""

    __slots__ = (
        "instance", "source_ip", "remote_ip", "principal", "uri_principal", "namespace", "auth_principal",
        "host", "host_no_port", "method", "path", "port", "destination_ip", "sni", "headers",
        "tcp", "_claims", "_identity",
    )

    def __init__(self, instance: Any) -> None:
        self.instance = instance
        self.source_ip = _address(instance.source_ip)
        self.remote_ip = _address(instance.remote_ip)
        principal = instance.source_principal or None
        if principal is not None and principal.startswith(SPIFFE):
            principal = principal[len(SPIFFE):]
        self.principal = principal
        self.uri_principal = SPIFFE + principal if principal else None
        self.namespace = instance.source_namespace or None
        self.auth_principal = instance.auth_principal or None
        # Maps are read by key, never tested for truth: the host records which keys a
        # decision read, and a whole-map read would key the cache on every header.
        headers = instance.request_headers
        self.headers = headers if headers is not None else _EMPTY
        host = instance.request_host
        if not host:
            host = self.headers.get(":authority")
        self.host = host.lower() if host else None
        self.host_no_port = _strip_port(self.host) if self.host else None
        self.method = instance.request_method or None
        path = instance.request_url_path or None
        if path is None and instance.request_path:
            path = instance.request_path.split("?", 1)[0].split("#", 1)[0]
        self.path = path
        self.port = instance.destination_port or None
        self.destination_ip = _address(instance.destination_ip)
        self.sni = instance.connection_sni or None
        self.tcp = instance.request_protocol == "tcp"
        self._claims: Any = _MISSING
        self._identity: Any = _MISSING

    def header(self, name: str) -> str | None:
        """A request header by (case-insensitive) name; ``:authority``/``:method``/``:path`` too."""
        headers = self.headers
        value = headers.get(name)
        if value is None and name != name.lower():
            value = headers.get(name.lower())
        if value is None:
            if name == ":authority":
                return self.instance.request_host or None
            if name == ":method":
                return self.method
            if name == ":path":
                return self.instance.request_path or None
        return value

    @property
    def jwt_identity(self) -> tuple[str, str] | None:
        """``(iss, sub)`` of the JWT: the claims when both are strings, else the principal split
        at its last ``/``; None without a JWT."""
        identity: tuple[str, str] | None
        if self._identity is _MISSING:
            identity = None
            claims = self.claims()
            iss, sub = claims.get("iss"), claims.get("sub")
            if isinstance(iss, str) and isinstance(sub, str):
                identity = (iss, sub)
            elif self.auth_principal:
                head, sep, tail = self.auth_principal.rpartition("/")
                identity = (head, tail) if sep else (self.auth_principal, "")
            self._identity = identity
        else:
            identity = self._identity
        return identity

    def claims(self) -> Mapping[str, Any]:
        """The JWT payload: parsed raw claims, else the claims string map (empty when neither)."""
        result: Mapping[str, Any]
        if self._claims is _MISSING:
            parsed: Any = None
            raw = self.instance.auth_raw_claims
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
            if not isinstance(parsed, Mapping):
                claims = self.instance.auth_claims
                parsed = claims if claims is not None else _EMPTY
            self._claims = result = parsed
        else:
            result = self._claims
        return result

    def claim_strings(self, path: list[str]) -> list[str]:
        """The string values of a (nested) claim: a string, or the strings of a list; [] when absent.

        Only the flat claims map (strings only) is descended through JSON objects, for a
        nested name; a value is never split at commas nor converted from a number or boolean.
        """
        value: Any = self.claims()
        flat = not self.instance.auth_raw_claims or value is self.instance.auth_claims
        for depth, name in enumerate(path):
            if flat and isinstance(value, str) and depth > 0:
                value = _json_object(value)
            if not isinstance(value, Mapping):
                return []
            value = value.get(name)
            if value is None:
                return []
        return _strings(value)

    def audiences(self) -> list[str]:
        """The ``aud`` claim (or the ``request.auth.audiences`` attribute) as a list of strings."""
        found = self.claim_strings(["aud"])
        if found:
            return found
        text = self.instance.auth_audiences
        return _strings(text) if text else []

    def presenter(self) -> list[str]:
        """The ``azp`` claim (or the ``request.auth.presenter`` attribute)."""
        found = self.claim_strings(["azp"])
        if found:
            return found
        text = self.instance.auth_presenter
        return [text] if text else []


def _json_object(text: str) -> Any:
    if text[:1] == "{":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _strings(value: Any) -> list[str]:
    """Envoy's list matcher: a string, or the string elements of a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


__all__ = ["RequestView", "SPIFFE"]
