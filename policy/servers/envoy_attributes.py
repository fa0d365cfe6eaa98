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
envoy.attributes                       the whole ``AttributeContext`` in protobuf's JSON mapping (as Go's
                                       protojson writes it: OPA-Envoy's ``input.attributes``), for
                                       instances that hand it to a policy verbatim
envoy.attributes_by_path               the same document by path (:class:`AttributePaths`): a map whose
                                       key is a path in it as a JSON list (``["request","http","method"]``;
                                       ``[]`` the whole) and whose value is the JSON there, computed when
                                       looked up, so a decision keys on the parts it read
=====================================  ===============================================================

An address that is not an IP address, or a timestamp out of range, is a
:class:`TranslationError` (the server answers INVALID_ARGUMENT).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format

from policy.error_base import PolicyError
from policy.servers.envoy_paths import AttributePaths

__all__ = [
    "FULL",
    "AttributePaths",
    "JWT_FILTER",
    "PRODUCED",
    "Plan",
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
#: Longest text (characters) the parsers memoize; longer ones are parsed each time, so the
#: memos hold at most ``_MEMO_LIMIT`` entries of bounded size (a few MiB), whatever clients send.
_MEMO_KEY_LIMIT = 512


class TranslationError(PolicyError, ValueError):
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
    if len(text) > _MEMO_KEY_LIMIT:
        return value
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
    if len(principal) > _MEMO_KEY_LIMIT:
        return parsed
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


_queries: dict[str, dict[str, str]] = {}


def query_params(query: str) -> dict[str, str]:
    """A query string as a map, percent-decoded; the first value of a repeated name wins (as Envoy).

    Memoized (the same queries come back); the map returned is shared, so it must not be changed.
    """
    out = _queries.get(query)
    if out is not None:
        return out
    out = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(name, value)
    if len(query) > _MEMO_KEY_LIMIT:
        return out
    if len(_queries) >= _MEMO_LIMIT:
        _queries.clear()
    _queries[query] = out
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


# --- what to translate ----------------------------------------------------------------------------

#: Every attribute :func:`check_request_attributes` can produce.
PRODUCED: frozenset[str] = frozenset({
    *(f"{side}.{name}" for side in ("source", "destination")
      for name in ("ip", "port", "principal", "namespace", "serviceAccount", "labels")),
    "request.method", "request.path", "request.url_path", "request.query_params", "request.host",
    "request.scheme", "request.headers", "request.id", "request.size", "request.time", "request.useragent",
    "request.referer", "request.body", "context.protocol", "context.extensions",
    "connection.requested_server_name", "connection.mtls", "request.auth.principal", "request.auth.audiences",
    "request.auth.presenter", "request.auth.claims", "request.auth.raw_claims", "envoy.attributes",
    "envoy.attributes_by_path",
})


class Plan:
    """Which attributes a translation produces: those a config's expressions can read.

    Translating an attribute nobody reads only costs time; an attribute in the plan is
    translated exactly as always, so its presence or absence (what decisions and the
    decision cache see) does not depend on the plan. ``header_keys`` None means the whole
    ``request.headers`` map is read; else only those keys are copied into it.
    """

    __slots__ = ("names", "header_keys", "source", "source_identity", "source_labels", "destination",
                 "destination_identity", "destination_labels", "mtls", "time", "http", "url", "headers",
                 "useragent", "referer", "protocol", "body", "sni", "extensions", "auth", "method", "path",
                 "host", "scheme", "id", "size", "source_port", "envoy_json", "envoy_paths")

    def __init__(self, names: frozenset[str], header_keys: tuple[str, ...] | None = None) -> None:
        self.names, self.header_keys = names, header_keys
        self.source = any(n.startswith("source.") for n in names) or "connection.mtls" in names
        self.source_identity = bool(names & {"source.namespace", "source.serviceAccount"})
        self.source_labels = "source.labels" in names
        self.source_port = "source.port" in names
        self.destination = any(n.startswith("destination.") for n in names)
        self.destination_identity = bool(names & {"destination.namespace", "destination.serviceAccount"})
        self.destination_labels = "destination.labels" in names
        self.mtls = "connection.mtls" in names
        self.time = "request.time" in names
        self.url = bool(names & {"request.url_path", "request.query_params"})
        self.headers = "request.headers" in names
        self.useragent, self.referer = "request.useragent" in names, "request.referer" in names
        self.protocol = "context.protocol" in names
        self.body = "request.body" in names
        self.method, self.path = "request.method" in names, "request.path" in names
        self.host, self.scheme = "request.host" in names, "request.scheme" in names
        self.id, self.size = "request.id" in names, "request.size" in names
        self.http = any(n.startswith("request.") and not n.startswith("request.auth.") and n != "request.time"
                        for n in names) or self.protocol
        self.sni = "connection.requested_server_name" in names
        self.extensions = "context.extensions" in names
        self.auth = any(n.startswith("request.auth.") for n in names)
        self.envoy_json = "envoy.attributes" in names
        self.envoy_paths = "envoy.attributes_by_path" in names

    @classmethod
    def for_reads(cls, reads: Iterable[tuple[str, str | None]]) -> "Plan":
        """The plan for expressions that read ``reads`` (``(name, None)`` or ``(map name, key)``)."""
        reads = set(reads)
        names = frozenset(name for name, _ in reads) & PRODUCED
        if ("request.headers", None) in reads:
            return cls(names)
        return cls(names, tuple(sorted({key for name, key in reads if name == "request.headers" and key})))

    def __repr__(self) -> str:
        return f"Plan({sorted(self.names)!r}, header_keys={self.header_keys!r})"


#: Translate everything the request carries.
FULL = Plan(PRODUCED)


# --- the translation ------------------------------------------------------------------------------

_SOURCE = ("source.ip", "source.port", "source.principal", "source.namespace", "source.serviceAccount",
           "source.labels", "attributes.source.address")
_DESTINATION = ("destination.ip", "destination.port", "destination.principal", "destination.namespace",
                "destination.serviceAccount", "destination.labels", "attributes.destination.address")


def _peer(peer: Any, names: tuple[str, ...], out: dict[str, Any], identity: bool, labels: bool,
          port_too: bool = True) -> bool:
    """Translate one peer; returns True when it presented a principal or certificate."""
    # Reading through unset messages gives their defaults (empty, 0): cheaper than HasField twice.
    socket_address = peer.address.socket_address
    ip = socket_address.address
    if ip:
        out[names[0]] = ip_address(ip, names[6] + ".socket_address.address")
    if port_too:
        port = socket_address.port_value
        if port:
            out[names[1]] = port
    principal = peer.principal
    if principal:
        out[names[2]] = principal
        if identity:
            namespace, account = parse_spiffe(principal)
            if namespace is not None:
                out[names[3]] = namespace
                out[names[4]] = account
    if labels and peer.labels:
        out[names[5]] = dict(peer.labels)
    return bool(principal or peer.certificate)


def _header_map(http: Any) -> Mapping[str, str]:
    """The request's headers to look names up in: Envoy's map, or a dict built from ``header_map``."""
    headers = http.headers
    if headers or not http.HasField("header_map"):
        return headers
    # Values are collected per name and joined once: linear in the request's size, where
    # concatenating onto the joined string per repeat would copy it again each time (quadratic).
    joined: dict[str, Any] = {}
    repeated = False
    for entry in http.header_map.headers:
        name = entry.key.lower()
        value = entry.value or entry.raw_value.decode("utf-8", "replace")
        seen = joined.get(name)
        if seen is None:
            joined[name] = value
        elif type(seen) is list:
            seen.append(value)
        else:
            joined[name] = [seen, value]
            repeated = True
    if repeated:
        for name, value in joined.items():
            if type(value) is list:
                joined[name] = ",".join(value)
    return joined


def _lowered(headers: Mapping[str, str]) -> Mapping[str, str]:
    # The API requires lower-case names (HTTP/2 has nothing else); lower-case anyway for other
    # clients. One C-level check over the joined names.
    if isinstance(headers, dict) or "".join(headers).islower():
        return headers
    return {k.lower(): v for k, v in headers.items()}


def _http(http: Any, out: dict[str, Any], plan: Plan) -> None:
    # Each field read makes a Python object: read only the planned ones.
    if plan.method:
        method = http.method
        if method:
            out["request.method"] = method
    if plan.path or plan.url:
        path = http.path
        if path:
            out["request.path"] = path
            if plan.url:
                url_path, query = split_path(path)
                out["request.url_path"] = url_path
                if query is not None:
                    out["request.query_params"] = query_params(query)
    if plan.host:
        host = http.host
        if host:
            out["request.host"] = host
    if plan.scheme:
        scheme = http.scheme
        if scheme:
            out["request.scheme"] = scheme
    if plan.id:
        request_id = http.id
        if request_id:
            out["request.id"] = request_id
    if plan.size:
        size = http.size
        if size >= 0:
            out["request.size"] = size
    source = _header_map(http)
    if plan.headers:
        keys = plan.header_keys
        if keys is None:
            source = headers = dict(_lowered(source))  # a dict: later lookups skip the case check
        else:
            headers = {k: source[k] for k in keys if k in source}
            if len(headers) < len(keys):  # a name may be missing only because a client sent it capitalized
                source = _lowered(source)
                headers = {k: source[k] for k in keys if k in source}
        if source:  # present as in the full translation: a key the map lacks reads as "" (Mixer)
            out["request.headers"] = headers
    if plan.useragent or plan.referer or plan.protocol:
        wanted = ("user-agent", "referer", "content-type")
        agent, referer, content_type = (source.get(name) for name in wanted)
        if None in (agent, referer, content_type) and not isinstance(source, dict):
            source = _lowered(source)
            agent, referer, content_type = (source.get(name) for name in wanted)
        if agent is not None:
            out["request.useragent"] = agent
        if referer is not None:
            out["request.referer"] = referer
        grpc = content_type is not None and content_type.startswith("application/grpc")
        out["context.protocol"] = "grpc" if grpc else "http"
    if plan.body:
        if http.body:
            out["request.body"] = http.body
        elif http.raw_body:
            out["request.body"] = http.raw_body.decode("utf-8", "replace")


def check_request_attributes(request: Any, plan: Plan = FULL) -> dict[str, Any]:
    """The attributes of an ext_authz v3 ``CheckRequest``, typed as the vocabulary says.

    :param plan: which attributes to produce (default: all the request carries).
    :raises TranslationError: an address that is not an IP address, a time out of range.
    """
    attrs = request.attributes
    out: dict[str, Any] = {}
    if plan.source:
        mtls = attrs.HasField("source") and _peer(attrs.source, _SOURCE, out, plan.source_identity,
                                                  plan.source_labels, plan.source_port)
        if plan.mtls:
            out["connection.mtls"] = mtls
    if plan.destination and attrs.HasField("destination"):
        _peer(attrs.destination, _DESTINATION, out, plan.destination_identity, plan.destination_labels)
    req = attrs.request
    if plan.time and req.HasField("time"):
        stamp = req.time
        try:
            out["request.time"] = _EPOCH + _timedelta(0, stamp.seconds, stamp.nanos // 1000)
        except OverflowError:
            raise TranslationError(f"attributes.request.time: {stamp.seconds}s is out of range") from None
    if req.HasField("http"):
        if plan.http:
            _http(req.http, out, plan)
    elif plan.protocol:
        out["context.protocol"] = "tcp"
    if plan.sni and attrs.tls_session.sni:
        out["connection.requested_server_name"] = attrs.tls_session.sni
    if plan.extensions and attrs.context_extensions:
        out["context.extensions"] = dict(attrs.context_extensions)
    if plan.auth and attrs.HasField("metadata_context"):
        payload = jwt_payload(attrs.metadata_context)
        if payload is not None:
            _auth_attributes(payload, out)
    if plan.envoy_paths:
        out["envoy.attributes_by_path"] = AttributePaths(attrs)
    if plan.envoy_json:
        out["envoy.attributes"] = json.dumps(json_format.MessageToDict(attrs), separators=(",", ":"),
                                             ensure_ascii=False)
    return out
