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
  nested objects) when present, else from the ``request.auth.claims`` string map.
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
        "_claims",
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
        self._claims: Any = _MISSING

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

    def claims(self) -> Mapping[str, Any]:
        """The JWT payload: parsed raw claims, else the claims string map (empty when neither)."""
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
            self._claims = parsed
        return self._claims

    def claim_strings(self, path: list[str]) -> list[str]:
        """The string values of a (nested) claim: a string, or the strings of a list; [] when absent.

        Values from the flat claims map that hold JSON (objects, lists) or comma-joined
        lists are unpacked, so ``claims[groups]`` matches one group of ``"a,b"``.
        """
        value: Any = self.claims()
        for depth, name in enumerate(path):
            if isinstance(value, str) and depth > 0:
                value = _json_or(value)
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


def _json_or(text: str) -> Any:
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        value = _json_or(value)
        if isinstance(value, str):
            if "," in value:
                return [value, *(part.strip() for part in value.split(","))]
            return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (int, float)):
        return [json.dumps(value)]
    return []


__all__ = ["RequestView", "SPIFFE"]
