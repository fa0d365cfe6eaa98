"""The ``input`` document a policy sees, built from the instance alone.

For ``requestcontext`` instances it is OPA-Envoy's shape (``opa-envoy-plugin``'s
``envoyauth/request.go`` for an ext_authz v3 ``CheckRequest``), so policies written
for OPA-Envoy run unchanged::

    {"attributes": {"source": {"address": {"socketAddress": {"address", "portValue"}}, "principal"},
                    "destination": {...same...},
                    "request": {"http": {"method", "path", "host", "scheme", "protocol",
                                         "headers", "body", "id", "size"}},
                    "contextExtensions": {...}, "tlsSession": {"sni"}},
     "parsed_path": ["people", "1"], "parsed_query": {"lang": ["en"]},
     "parsed_body": {...} | null, "truncated_body": false,
     "version": {"ext_authz": "v3", "encoding": "protojson"}}

Absent and empty values are left out, as protojson leaves out fields with their
default value (the template gives ``""``, ``0``, ``{}`` or ``0.0.0.0`` for absent attributes). ``parsed_body`` is
the body parsed as JSON (``application/json``) or as a form
(``application/x-www-form-urlencoded``, lists of values), else null; a body shorter
than its ``content-length`` is ``truncated_body`` and not parsed.

For ``authorization`` instances it is Mixer's opa adapter shape:
``{"subject": {"user", "groups": [groups], "properties"}, "action": {"namespace",
"service", "method", "path", "properties"}}`` with empty members left out.

Everything comes from the instance, whose expressions' reads key the decision cache,
so cached decisions stay correct. :func:`build_input` is the one place to change when
the transport hands adapters a ready-made document instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

VERSION = {"ext_authz": "v3", "encoding": "protojson"}


class InputError(ValueError):
    """The request cannot be turned into an input document (a body that does not parse)."""


def _address(ip: Any, port: int | None) -> dict[str, Any]:
    socket: dict[str, Any] = {}
    if ip is not None and not ip.is_unspecified:
        socket["address"] = str(ip)
    if port:
        socket["portValue"] = port
    return {"address": {"socketAddress": socket}} if socket else {}


def parsed_path(url_path: str) -> list[str]:
    """OPA-Envoy's ``parsed_path``: percent-decoded, leading ``/`` trimmed, split on ``/``."""
    return unquote(url_path).lstrip("/").split("/")


def _parsed_body(headers: Mapping[str, str], body: str | None) -> tuple[Any, bool]:
    if not body:
        return None, False
    content_type = headers.get("content-type", "")
    declared = headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > len(body.encode("utf-8")):
                return None, True
        except ValueError:
            raise InputError(f"content-length is not a number: {declared!r}") from None
    if "application/json" in content_type:
        try:
            return json.loads(body), False
        except ValueError as exc:
            raise InputError(f"request body is not valid JSON: {exc}") from None
    if "application/x-www-form-urlencoded" in content_type:
        return parse_qs(body, keep_blank_values=True), False
    return None, False


def envoy_input(instance: Any) -> dict[str, Any]:
    """OPA-Envoy's input document for a ``requestcontext`` instance (see the module docstring)."""
    headers = dict(instance.request_headers or {})
    path = instance.request_path or headers.get(":path")
    url_path = instance.request_url_path or None
    query = ""
    if path:
        head, _, query = path.partition("?")
        query = query.partition("#")[0]
        if url_path is None:
            url_path = head.partition("#")[0]
    http: dict[str, Any] = {}
    for key, value in (("method", instance.request_method), ("path", path), ("host", instance.request_host),
                       ("scheme", instance.request_scheme), ("protocol", instance.request_protocol),
                       ("id", instance.request_id), ("body", instance.request_body)):
        if value:  # protojson leaves out empty strings, as the template's defaults give for absent ones
            http[key] = value
    if instance.request_size is not None:
        http["size"] = str(instance.request_size)  # int64 → string in protojson
    if headers:
        http["headers"] = headers
    attributes: dict[str, Any] = {"request": {"http": http}}
    source = _address(instance.source_ip, instance.source_port)
    if instance.source_principal:
        source["principal"] = instance.source_principal
    if source:
        attributes["source"] = source
    destination = _address(instance.destination_ip, instance.destination_port)
    if instance.destination_principal:
        destination["principal"] = instance.destination_principal
    if destination:
        attributes["destination"] = destination
    if instance.context_extensions:
        attributes["contextExtensions"] = dict(instance.context_extensions)
    if instance.connection_sni:
        attributes["tlsSession"] = {"sni": instance.connection_sni}
    body, truncated = _parsed_body(headers, instance.request_body)
    return {
        "attributes": attributes,
        "parsed_path": parsed_path(url_path) if url_path is not None else [],
        "parsed_query": parse_qs(query, keep_blank_values=True) if query else {},
        "parsed_body": body,
        "truncated_body": truncated,
        "version": dict(VERSION),
    }


def _present(pairs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v}


def mixer_input(instance: Any) -> dict[str, Any]:
    """Mixer's opa adapter input for an ``authorization`` instance."""
    subject, action = instance.subject, instance.action
    sub = _present({"user": subject.user, "groups": [subject.groups] if subject.groups else None,
                    "properties": _jsonable(subject.properties or {})})
    act = _present({"namespace": action.namespace, "service": action.service, "method": action.method,
                    "path": action.path, "properties": _jsonable(action.properties or {})})
    return {"subject": sub, "action": act}


def build_input(instance: Any) -> dict[str, Any]:
    """The input document for an instance: OPA-Envoy's for requestcontext, Mixer's for authorization."""
    if hasattr(instance, "subject") and hasattr(instance, "action"):
        return mixer_input(instance)
    return envoy_input(instance)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


__all__ = ["InputError", "VERSION", "build_input", "envoy_input", "mixer_input", "parsed_path"]
