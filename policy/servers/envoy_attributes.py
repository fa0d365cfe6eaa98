"""Translating Envoy's ext_authz v3 ``CheckRequest`` into attributes.

Only what the request carries is translated: an absent field leaves its
attribute absent (never an empty string), so the decision cache and the
``|`` default operator see the same absence Mixer's proxies reported.

=====================================  ===============================================================
attribute                              from (``AttributeContext`` of the CheckRequest)
=====================================  ===============================================================
source.ip, source.port                 ``source.address.socket_address`` (address, port_value)
source.principal                       ``source.principal`` (as sent, e.g. ``spiffe://td/ns/a/sa/b``)
source.namespace, source.serviceAccount  parsed from a SPIFFE principal ``[spiffe://]<td>/ns/<ns>/sa/<sa>``
source.labels                          ``source.labels``
destination.ip, destination.port       ``destination.address.socket_address``
destination.principal                  ``destination.principal`` (namespace/serviceAccount parsed too)
destination.labels                     ``destination.labels``
request.method                         ``request.http.method``
request.path                           ``request.http.path`` as sent (query included)
request.url_path                       the path without ``?query`` (and without a ``#fragment``)
request.query_params                   the query, percent-decoded; the first value of a repeated name
request.host, request.scheme           ``request.http.host``, ``request.http.scheme``
request.headers                        ``request.http.headers`` (or ``header_map``), lower-case keys;
                                       repeated names in ``header_map`` joined with ``,``
request.id                             ``request.http.id`` (Envoy's ``x-request-id``)
request.size                           ``request.http.size`` when known (Envoy sends -1 when not)
request.time                           ``request.time``
request.useragent, request.referer     the ``user-agent`` and ``referer`` headers
request.body                           ``request.http.body``, else ``raw_body`` decoded as UTF-8
context.protocol                       ``grpc`` for ``content-type: application/grpc*``, ``http`` for
                                       other HTTP requests, ``tcp`` when there is no HTTP request
connection.requested_server_name       ``tls_session.sni``
connection.mtls                        true when the source presented a principal or a certificate
context.extensions                     ``context_extensions``
request.auth.principal                 ``iss/sub`` of the JWT payload ``jwt_authn`` put in
                                       ``metadata_context.filter_metadata["envoy.filters.http.jwt_authn"]``
request.auth.audiences                 the payload's ``aud`` (its first element when a list, as Istio did)
request.auth.presenter                 the payload's ``azp``
request.auth.claims                    every claim as a string: lists of strings joined with ``,``,
                                       numbers and booleans in JSON form, objects as compact JSON
request.auth.raw_claims                the payload as compact JSON
=====================================  ===============================================================

An address that is not an IP address, or a timestamp out of range, is a
:class:`TranslationError` (the server answers INVALID_ARGUMENT).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "JWT_FILTER",
    "TranslationError",
    "check_request_attributes",
    "claims_strings",
    "ip_address",
    "jwt_payload",
    "parse_spiffe",
    "split_path",
]

#: The filter namespace Envoy's jwt_authn filter writes validated payloads under.
JWT_FILTER = "envoy.filters.http.jwt_authn"

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_timedelta = _dt.timedelta
_MEMO_LIMIT = 4096


class TranslationError(ValueError):
    """A request field could not be translated; the message names the field."""


# --- small parsers, memoized: the same peers and principals come back on every request ------------

_ips: dict[str, Any] = {}
_spiffe: dict[str, tuple[str | None, str | None]] = {}


def ip_address(text: str, field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an IP address (memoized); raise TranslationError naming ``field`` when it is none."""
    value = _ips.get(text)
    if value is not None:
        return value
    try:
        value = ipaddress.ip_address(text)
    except ValueError:
        raise TranslationError(f"{field}: {text!r} is not an IP address") from None
    if len(_ips) >= _MEMO_LIMIT:
        _ips.clear()
    _ips[text] = value
    return value


def parse_spiffe(principal: str) -> tuple[str | None, str | None]:
    """``(namespace, service account)`` of ``[spiffe://]<trust-domain>/ns/<ns>/sa/<sa>``, else ``(None, None)``."""
    parsed = _spiffe.get(principal)
    if parsed is not None:
        return parsed
    rest = principal[9:] if principal.startswith("spiffe://") else principal
    parts = rest.split("/")
    if len(parts) == 5 and parts[0] and parts[1] == "ns" and parts[2] and parts[3] == "sa" and parts[4]:
        parsed = (parts[2], parts[4])
    else:
        parsed = (None, None)
    if len(_spiffe) >= _MEMO_LIMIT:
        _spiffe.clear()
    _spiffe[principal] = parsed
    return parsed


def split_path(path: str) -> tuple[str, str | None]:
    """``(url_path, query)`` of a request path; the query is None when there is no ``?``.

    A ``#fragment`` (Envoy does not forward one, but a client may send it) is dropped.
    """
    hash_at = path.find("#")
    if hash_at >= 0:
        path = path[:hash_at]
    query_at = path.find("?")
    if query_at < 0:
        return path, None
    return path[:query_at], path[query_at + 1:]


def query_params(query: str) -> dict[str, str]:
    """A query string as a map, percent-decoded; the first value of a repeated name wins (as Envoy)."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(name, value)
    return out


# --- JWT payloads ---------------------------------------------------------------------------------


def jwt_payload(metadata_context: Any) -> Any | None:
    """The JWT payload (a ``Struct``) jwt_authn put in the metadata, or None.

    jwt_authn stores each validated payload under its provider's ``payload_in_metadata``
    key (Istio uses the issuer). The first one with an ``iss`` or ``sub`` claim is taken.
    """
    filter_metadata = metadata_context.filter_metadata
    if JWT_FILTER not in filter_metadata:
        return None
    namespace = filter_metadata[JWT_FILTER]
    for key in sorted(namespace.fields):
        value = namespace.fields[key]
        if value.WhichOneof("kind") == "struct_value":
            fields = value.struct_value.fields
            if "iss" in fields or "sub" in fields:
                return value.struct_value
    return None


def _plain(value: Any) -> Any:
    """A ``google.protobuf.Value`` as a Python value (numbers that are integers become ints)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**63 else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: _plain(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(v) for v in value.list_value.values]
    return None


def _claim_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def claims_strings(payload: Mapping[str, Any]) -> dict[str, str]:
    """Claims as a string map: strings as they are, lists of strings joined with ``,``, else JSON."""
    return {name: _claim_text(value) for name, value in payload.items()}


def _auth_attributes(payload_struct: Any, out: dict[str, Any]) -> None:
    payload = {k: _plain(v) for k, v in payload_struct.fields.items()}
    iss, sub = payload.get("iss"), payload.get("sub")
    if isinstance(iss, str) and isinstance(sub, str):
        out["request.auth.principal"] = f"{iss}/{sub}"
    aud = payload.get("aud")
    if isinstance(aud, list):
        aud = aud[0] if aud else None
    if isinstance(aud, str):
        out["request.auth.audiences"] = aud
    azp = payload.get("azp")
    if isinstance(azp, str):
        out["request.auth.presenter"] = azp
    out["request.auth.claims"] = claims_strings(payload)
    out["request.auth.raw_claims"] = json.dumps(payload, separators=(",", ":"), sort_keys=True)


# --- the translation ------------------------------------------------------------------------------

_SOURCE = ("source.ip", "source.port", "source.principal", "source.namespace", "source.serviceAccount",
           "source.labels", "attributes.source.address")
_DESTINATION = ("destination.ip", "destination.port", "destination.principal", "destination.namespace",
                "destination.serviceAccount", "destination.labels", "attributes.destination.address")


def _peer(peer: Any, names: tuple[str, ...], out: dict[str, Any]) -> bool:
    """Translate one peer; returns True when it presented a principal or certificate."""
    if peer.HasField("address"):
        address = peer.address
        if address.HasField("socket_address"):
            socket_address = address.socket_address
            if socket_address.address:
                out[names[0]] = ip_address(socket_address.address, names[6] + ".socket_address.address")
            port = socket_address.port_value
            if port:
                out[names[1]] = port
    principal = peer.principal
    if principal:
        out[names[2]] = principal
        namespace, account = parse_spiffe(principal)
        if namespace is not None:
            out[names[3]] = namespace
            out[names[4]] = account
    if peer.labels:
        out[names[5]] = dict(peer.labels)
    return bool(principal or peer.certificate)


def _headers(http: Any) -> dict[str, str]:
    headers = dict(http.headers)
    if headers:
        # HTTP/2 header names are lower case; lower-case anyway for HTTP/1 proxies (one C-level check).
        if not "".join(headers).islower():
            headers = {k.lower(): v for k, v in headers.items()}
        return headers
    if http.HasField("header_map"):
        for entry in http.header_map.headers:
            name = entry.key.lower()
            value = entry.value or entry.raw_value.decode("utf-8", "replace")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _http(http: Any, out: dict[str, Any]) -> None:
    if http.method:
        out["request.method"] = http.method
    path = http.path
    if path:
        out["request.path"] = path
        url_path, query = split_path(path)
        out["request.url_path"] = url_path
        if query is not None:
            out["request.query_params"] = query_params(query)
    if http.host:
        out["request.host"] = http.host
    if http.scheme:
        out["request.scheme"] = http.scheme
    if http.id:
        out["request.id"] = http.id
    if http.size >= 0:
        out["request.size"] = http.size
    headers = _headers(http)
    protocol = "http"
    if headers:
        out["request.headers"] = headers
        agent = headers.get("user-agent")
        if agent is not None:
            out["request.useragent"] = agent
        referer = headers.get("referer")
        if referer is not None:
            out["request.referer"] = referer
        content_type = headers.get("content-type")
        if content_type is not None and content_type.startswith("application/grpc"):
            protocol = "grpc"
    out["context.protocol"] = protocol
    if http.body:
        out["request.body"] = http.body
    elif http.raw_body:
        out["request.body"] = http.raw_body.decode("utf-8", "replace")


def check_request_attributes(request: Any) -> dict[str, Any]:
    """The attributes of an ext_authz v3 ``CheckRequest``, typed as the vocabulary says.

    :raises TranslationError: an address that is not an IP address, a time out of range.
    """
    attrs = request.attributes
    out: dict[str, Any] = {}
    mtls = False
    if attrs.HasField("source"):
        mtls = _peer(attrs.source, _SOURCE, out)
    if attrs.HasField("destination"):
        _peer(attrs.destination, _DESTINATION, out)
    out["connection.mtls"] = mtls
    if attrs.HasField("request"):
        req = attrs.request
        if req.HasField("time"):
            stamp = req.time
            try:
                out["request.time"] = _EPOCH + _timedelta(0, stamp.seconds, stamp.nanos // 1000)
            except OverflowError:
                raise TranslationError(f"attributes.request.time: {stamp.seconds}s is out of range") from None
        if req.HasField("http"):
            _http(req.http, out)
        else:
            out["context.protocol"] = "tcp"
    else:
        out["context.protocol"] = "tcp"
    if attrs.HasField("tls_session") and attrs.tls_session.sni:
        out["connection.requested_server_name"] = attrs.tls_session.sni
    if attrs.context_extensions:
        out["context.extensions"] = dict(attrs.context_extensions)
    if attrs.HasField("metadata_context"):
        payload = jwt_payload(attrs.metadata_context)
        if payload is not None:
            _auth_attributes(payload, out)
    return out
